"""Phone numbers: the one place that reads, writes and masks them.

Every door a phone number comes in by (admin's forms through
``Player.clean``, the API and the services, ``seed_demo``, the data migration
that rewrote the numbers already stored) calls ``normalize_phone_number``, so
a player's number, and the snapshot a ballot copies from it, is stored in one
spelling: E.164 (``+442079460958``), or empty for none. Fraud detection
compares those strings, so two spellings of one number are one number.

A number written without its country code is read in ``PHONE_DEFAULT_REGION``
(none by default: such a number is refused rather than guessed). A number is
accepted only when Google's libphonenumber metadata (the ``phonenumbers``
package, pinned in requirements.txt because a new release changes which
numbers are valid) calls it a valid number, not merely one of a possible
length, so a typo is refused at the door rather than stored.

Logs never carry a number: they name it through ``mask_phone``.
"""

import phonenumbers
from django.conf import settings

from entries.errors import InvalidPhoneNumber

# The reasons an InvalidPhoneNumber carries in its details, for clients and forms.
NOT_A_NUMBER = "not_a_number"
COUNTRY_CODE_REQUIRED = "country_code_required"
UNKNOWN_COUNTRY_CODE = "unknown_country_code"
NOT_VALID = "not_a_valid_number"

_MESSAGES = {
    NOT_A_NUMBER: "This is not a phone number.",
    COUNTRY_CODE_REQUIRED: "Write the number with its country code, e.g. +44 20 7946 0958.",
    UNKNOWN_COUNTRY_CODE: "No country has this country code.",
    NOT_VALID: "This is not a valid phone number for its country (a digit missing or too many?).",
}
# The longest input looked at: an E.164 number has 15 digits; spaces, dashes
# and a national prefix leave room, a paragraph does not.
MAX_INPUT_LENGTH = 64
_MASK = "******"


def normalize_phone_number(raw: str | None, *, region: str | None = None) -> str:
    """The E.164 spelling of ``raw`` (``""`` for blank), or raise ``InvalidPhoneNumber``.

    ``region`` (an ISO 3166 code such as ``"GB"``) reads a number written
    without a country code; by default ``PHONE_DEFAULT_REGION``. A number
    with its ``+`` country code is read as written, whatever the region.
    """
    text = (raw or "").strip()
    if not text:
        return ""
    region = (settings.PHONE_DEFAULT_REGION if region is None else region) or None
    if len(text) > MAX_INPUT_LENGTH:
        raise _invalid(NOT_A_NUMBER)
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException as error:
        if error.error_type != phonenumbers.NumberParseException.INVALID_COUNTRY_CODE:
            raise _invalid(NOT_A_NUMBER) from None
        written_without = region is None and not text.startswith("+")
        raise _invalid(COUNTRY_CODE_REQUIRED if written_without else UNKNOWN_COUNTRY_CODE) from None
    if not phonenumbers.is_valid_number(number):
        raise _invalid(NOT_VALID)
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _invalid(reason: str) -> InvalidPhoneNumber:
    return InvalidPhoneNumber(_MESSAGES[reason], details={"field": "phone_number", "reason": reason})


def mask_phone(number: str | None) -> str:
    """A number as logs and lists may show it: the country code and the last three digits.

    ``mask_phone("+447946000958") == "+44******958"``. The country code is
    libphonenumber's, so ``+1`` keeps one digit and ``+353`` three; the mask
    is always six stars, so it does not tell the number's length either. A
    number that is not E.164 (a legacy spelling the migration could not read)
    keeps only its last two characters. Empty stays empty.
    """
    if not number:
        return ""
    if number.startswith("+") and number[1:].isdigit() and len(number) >= 8:
        return f"+{_country_code(number)}{_MASK}{number[-3:]}"
    return f"{_MASK}{number[-2:]}" if len(number) > 4 else _MASK


def _country_code(e164: str) -> str:
    digits = e164[1:]
    for size in (1, 2, 3):
        if phonenumbers.region_code_for_country_code(int(digits[:size])) != phonenumbers.UNKNOWN_REGION:
            return digits[:size]
    return digits[:1]
