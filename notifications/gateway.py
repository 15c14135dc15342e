"""The SMS gateway: one interface, with the backend ``SMS_BACKEND`` names.

- ``simulated`` (the default) stands for a provider: each message takes
  ``SMS_LATENCY_MIN_MS``..``SMS_LATENCY_MAX_MS``, a batch
  ``SMS_BATCH_LATENCY_MIN_MS``..``SMS_BATCH_LATENCY_MAX_MS``, and a share
  ``SMS_FAILURE_RATE`` of the messages fail (each logs
  ``anomalous_sms_delivery_failure``); these are live settings
  (``core.live``): a worker sees a change made in admin within seconds;
- ``console`` writes each message to the log, at once and without failures;
- any other value is the dotted path of a class implementing ``SmsGateway``
  (a real provider), built with no arguments.

Every gateway takes an idempotency key per message and refuses a key it has
seen (``KeyAlreadySeen``, with the first message's id), as real providers'
idempotency keys allow. The two local gateways keep their keys in a table
(``GatewayMessage``), written in its own transaction at the moment they
accept a message: a worker killed after that moment and the retry that
follows leave one message.
"""

import logging
import random
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any, Protocol

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.utils import timezone
from django.utils.module_loading import import_string

from core.db import sql
from core.live import live
from entries.phones import mask_phone
from notifications.models import GatewayMessage

logger = logging.getLogger(__name__)

# The log event of an injected failure, as the first seed names it.
INJECTED_FAILURE = "anomalous_sms_delivery_failure"
# Told of each injected failure (masked recipient, idempotency key), after its log line: the load
# generator's ground truth registers its record here (loadgen.apps).
ON_INJECTED_FAILURE: list[Callable[[dict[str, str]], None]] = []


@dataclass(frozen=True)
class OutgoingSms:
    to: str
    body: str
    idempotency_key: str


@dataclass(frozen=True)
class SendResult:
    gateway_message_id: str
    latency_ms: int


class SmsRefused(Exception):
    """The gateway did not take the message."""


class DeliveryFailed(SmsRefused):
    """The gateway failed this attempt (a provider error, a time-out): worth a retry with the same key."""


class KeyAlreadySeen(SmsRefused):
    """The gateway already accepted a message with this key: it was sent, and is not sent again."""

    def __init__(self, gateway_message_id: str) -> None:
        super().__init__(f"idempotency key already used by gateway message {gateway_message_id}")
        self.gateway_message_id = gateway_message_id


class SmsGateway(Protocol):
    """What a backend implements. ``send_batch`` answers per message, in order, a result or the refusal."""

    def send(self, message: OutgoingSms) -> SendResult: ...

    def send_batch(self, messages: Sequence[OutgoingSms]) -> list[SendResult | SmsRefused]: ...


# Accept the messages whose keys are new; the keys seen before come back with the first message's id.
_ACCEPT_SQL = sql(
    """
WITH offered(idempotency_key, gateway_message_id, recipient, body) AS (
    SELECT * FROM unnest(%(keys)s::text[], %(ids)s::text[], %(recipients)s::text[], %(bodies)s::text[])
), accepted AS (
    INSERT INTO {GatewayMessage} (idempotency_key, gateway_message_id, backend, recipient, body, accepted_at)
    SELECT idempotency_key, gateway_message_id, %(backend)s, recipient, body, %(now)s FROM offered
    ON CONFLICT (idempotency_key) DO NOTHING
    RETURNING idempotency_key
)
SELECT o.idempotency_key, (a.idempotency_key IS NOT NULL), coalesce(m.gateway_message_id, o.gateway_message_id),
       (a.idempotency_key IS NULL AND m.idempotency_key IS NULL)
FROM offered o
LEFT JOIN accepted a ON a.idempotency_key = o.idempotency_key
LEFT JOIN {GatewayMessage} m ON m.idempotency_key = o.idempotency_key AND a.idempotency_key IS NULL
""",
    GatewayMessage=GatewayMessage,
)


def _accept(backend: str, messages: Sequence[OutgoingSms]) -> dict[str, str | KeyAlreadySeen]:
    """Record the messages as accepted: key -> new gateway id, or the refusal of a key seen before.

    The services call a gateway outside any transaction, so this commits at
    once, as a provider's acceptance would: nothing the worker does later
    (dying included) takes it back.
    """
    params: dict[str, Any] = {
        "keys": [m.idempotency_key for m in messages],
        "ids": [f"{backend}-{uuid.uuid4().hex}" for _ in messages],
        "recipients": [m.to for m in messages],
        "bodies": [m.body for m in messages],
        "backend": backend,
        "now": timezone.now(),
    }
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(_ACCEPT_SQL, params)
        rows = cursor.fetchall()
    # A key another sender committed while this statement ran: its row was not in the statement's snapshot.
    unseen = [key for key, _, _, committed_meanwhile in rows if committed_meanwhile]
    first_ids = dict(
        GatewayMessage.objects.filter(idempotency_key__in=unseen).values_list("idempotency_key", "gateway_message_id")
    )
    return {
        key: gateway_id if is_new else KeyAlreadySeen(first_ids.get(key, gateway_id) if meanwhile else gateway_id)
        for key, is_new, gateway_id, meanwhile in rows
    }


def _latency_ms(low: int, high: int) -> int:
    """A random latency in [low, high] ms; a maximum set below the minimum (live, in admin) counts as the minimum."""
    return random.randint(low, max(low, high))  # noqa: S311 (a simulation, not a secret)


class SimulatedGateway:
    """A provider's behaviour without a provider: latency, failures, and the refusal of a seen key.

    Half of a message's latency passes before the gateway accepts it and half
    after (the answer's way back), so a worker can die on either side of the
    moment the message is sent.
    """

    name = "simulated"

    def deliver_inbound(self, *, from_number: str, body: str) -> bool:
        """A player's answer arriving, as a real provider's webhook would bring it (a STOP opts them out)."""
        from notifications.services import sms_received  # the services use the gateway

        return sms_received(from_number=from_number, body=body)

    def _failed(self, message: OutgoingSms) -> DeliveryFailed | None:
        if not live("ANOMALY_SMS_FAILURE_ENABLED") or random.random() >= live("SMS_FAILURE_RATE"):  # noqa: S311
            return None
        details = {"recipient": mask_phone(message.to), "key": message.idempotency_key}
        logger.warning(INJECTED_FAILURE, extra=details)
        for hook in ON_INJECTED_FAILURE:
            try:
                hook(details)
            except DatabaseError:  # the ground truth records a failure; it never causes another one
                logger.exception("recording an injected SMS failure failed")
        return DeliveryFailed("simulated delivery failure")

    def send(self, message: OutgoingSms) -> SendResult:
        started = time.monotonic()
        latency = _latency_ms(live("SMS_LATENCY_MIN_MS"), live("SMS_LATENCY_MAX_MS"))
        time.sleep(latency / 2000)
        failure = self._failed(message)
        if failure is not None:
            time.sleep(latency / 2000)
            raise failure
        outcome = _accept(self.name, [message])[message.idempotency_key]
        time.sleep(latency / 2000)
        if isinstance(outcome, KeyAlreadySeen):
            raise outcome
        return SendResult(gateway_message_id=outcome, latency_ms=round((time.monotonic() - started) * 1000))

    def send_batch(self, messages: Sequence[OutgoingSms]) -> list[SendResult | SmsRefused]:
        started = time.monotonic()
        failures = {m.idempotency_key: self._failed(m) for m in messages}
        offered = [m for m in messages if failures[m.idempotency_key] is None]
        latency = _latency_ms(live("SMS_BATCH_LATENCY_MIN_MS"), live("SMS_BATCH_LATENCY_MAX_MS"))
        time.sleep(latency / 2000)
        outcomes = _accept(self.name, offered) if offered else {}
        time.sleep(latency / 2000)
        took = round((time.monotonic() - started) * 1000)
        results: list[SendResult | SmsRefused] = []
        for message in messages:
            failure = failures[message.idempotency_key]
            outcome = failure if failure is not None else outcomes[message.idempotency_key]
            results.append(SendResult(outcome, took) if isinstance(outcome, str) else outcome)
        return results


class ConsoleGateway:
    """Writes each message to the log (the number masked) and keeps its key, so it refuses a key twice too."""

    name = "console"

    def send(self, message: OutgoingSms) -> SendResult:
        result = self.send_batch([message])[0]
        if isinstance(result, SmsRefused):
            raise result
        return result

    def send_batch(self, messages: Sequence[OutgoingSms]) -> list[SendResult | SmsRefused]:
        outcomes = _accept(self.name, messages)
        results: list[SendResult | SmsRefused] = []
        for message in messages:
            outcome = outcomes[message.idempotency_key]
            if isinstance(outcome, str):
                logger.info(
                    "SMS to %s: %s", mask_phone(message.to), message.body, extra={"key": message.idempotency_key}
                )
                results.append(SendResult(gateway_message_id=outcome, latency_ms=0))
            else:
                results.append(outcome)
        return results


BACKENDS: dict[str, type[SmsGateway]] = {"simulated": SimulatedGateway, "console": ConsoleGateway}


@cache
def _gateway(backend: str) -> SmsGateway:
    gateway_class = BACKENDS.get(backend) or import_string(backend)
    return gateway_class()


def gateway() -> SmsGateway:
    """The backend ``SMS_BACKEND`` names, built once per process per name."""
    return _gateway(settings.SMS_BACKEND)
