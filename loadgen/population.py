"""The load generator's players: who they are, with what phone number and account, and whose twin each cheater is.

Pure (no database): the provisioning service writes these players, the
generator and the trigger read the same description, so index ``i`` is the
same person everywhere and across runs.

- **Honest players** ``loadgen-p00001`` ... each have a phone number and an
  external account of their own.
- **Twins** ``loadgen-c00001`` ...: twin ``i`` copies honest player ``i``'s
  phone number (odd ``i``), provisioned in another spelling that E.164
  normalisation must bring back to the same number, or its external account
  id (even ``i``), exactly. A twin only ever enters a drop as a cheat, after
  its honest player's ballot there was accepted.

Phone numbers come from Ofcom's ranges reserved for drama (``+44 20 7946
0xxx`` and the like): valid numbers that belong to nobody, so a real SMS
backend never texts a stranger.
"""

from dataclasses import dataclass
from functools import cache

import phonenumbers

PREFIX = "loadgen-"
# Ofcom's drama ranges that libphonenumber takes as valid numbers: 1,000 numbers each.
_DRAMA_RANGES = (
    "+442079460", "+441134960", "+441144960", "+441164960", "+441174960", "+441184960", "+441214960",
    "+441314960", "+441414960", "+441514960", "+441614960", "+441914980", "+442896496", "+442920180",
)  # fmt: skip
NUMBERS = 1000 * len(_DRAMA_RANGES)
# Honest players each need a number, and so does every account twin (half of them): 1.5 numbers a player.
MAX_PLAYERS = 2000  # well within NUMBERS * 2 / 3; 4,000 players provisioned in one call of a few seconds

PHONE, ACCOUNT = "phone_number", "external_account_id"


def _number(k: int) -> str:
    """The k-th fictional number, E.164 (k in [0, NUMBERS))."""
    block, rest = divmod(k, 1000)
    prefix = _DRAMA_RANGES[block]
    return f"{prefix}{rest:03d}"


def respelled(e164: str, variant: int) -> str:
    """``e164`` written another way a person might: spaces, a national ``(0)``, dashes, dots, a bracketed code."""
    number = phonenumbers.parse(e164, None)
    spaced = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL)  # +44 20 7946 0001
    code, _, rest = spaced.partition(" ")
    spellings = (
        spaced,
        f"{code} (0){rest}",
        f"{code}-{rest.replace(' ', '-')}",
        f"{code}.{rest.replace(' ', '.')}",
        f"({code}) {rest}",
    )
    return spellings[variant % len(spellings)]


@dataclass(frozen=True)
class Member:
    index: int  # 1-based; a twin has its honest player's index
    username: str
    phone_number: str  # as provisioned (a phone twin's in another spelling)
    external_account_id: str
    twin_of: str | None = None  # the honest player's username, for a twin
    shares: str | None = None  # PHONE or ACCOUNT, for a twin


@cache
def honest(i: int) -> Member:
    return Member(i, f"{PREFIX}p{i:05d}", _number(i - 1), f"{PREFIX}acct-{i:05d}")


@cache
def twin(i: int) -> Member:
    original = honest(i)
    if i % 2:
        return Member(
            i, f"{PREFIX}c{i:05d}", respelled(original.phone_number, i // 2), f"{PREFIX}acct-c{i:05d}",
            twin_of=original.username, shares=PHONE,
        )  # fmt: skip
    return Member(
        i, f"{PREFIX}c{i:05d}", _number(NUMBERS - i // 2), original.external_account_id,
        twin_of=original.username, shares=ACCOUNT,
    )  # fmt: skip


def members(count: int) -> list[Member]:
    """``count`` honest players and their ``count`` twins, honest first."""
    if not 1 <= count <= MAX_PLAYERS:
        raise ValueError(f"a population is 1 to {MAX_PLAYERS} players")
    return [honest(i) for i in range(1, count + 1)] + [twin(i) for i in range(1, count + 1)]
