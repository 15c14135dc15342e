"""Serializer fields shared by the apps' APIs.

Money shown with its currency's minor digits; and fields that take input as
documented, without DRF's lenient coercions: DRF's own fields accept more
than their OpenAPI type says (``"1.0"`` for an integer, ``1`` or ``"yes"``
for a boolean, a number for a string, any date format ``strptime`` can
read), so a client could rely on input the document calls invalid.
"""

import re
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.fields import get_attribute

from core.currencies import format_money


@extend_schema_field({"type": "string", "nullable": True, "pattern": r"^\d+(\.\d+)?$", "example": "18.90"})
class MoneyField(serializers.Field):  # type: ignore[type-arg]
    """A read-only amount, as a decimal string with its currency's minor digits ("18.90" EUR, "1500" JPY).

    ``currency_source`` is the attribute path, on the same object, of the
    amount's ISO 4217 code. A null amount is shown as null.
    """

    def __init__(self, *, currency_source: str = "currency", **kwargs: Any) -> None:
        kwargs["read_only"] = True
        super().__init__(**kwargs)
        self.currency_source = currency_source.split(".")

    def get_attribute(self, instance: Any) -> tuple[Decimal | None, str]:
        return super().get_attribute(instance), get_attribute(instance, self.currency_source)

    def to_representation(self, value: tuple[Decimal | None, str]) -> str | None:
        amount, currency = value
        return None if amount is None else format_money(amount, currency)


ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
RFC3339_DATE_TIME = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?(?:[Zz]|[+-][0-9]{2}:[0-9]{2})"
)
_DIGITS = re.compile(r"[0-9]+")


def parse_iso_date(value: str) -> date | None:
    """``YYYY-MM-DD`` as a date, or None for anything else (``20240101``, ``2024-1-1``, ``2024-02-30``)."""
    if not ISO_DATE.fullmatch(value):
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        return None


def parse_rfc3339(value: str) -> datetime | None:
    """An RFC 3339 date-time (with its offset) as an aware datetime, or None."""
    if not RFC3339_DATE_TIME.fullmatch(value):
        return None
    try:
        return datetime.fromisoformat(value.upper())
    except ValueError:
        return None


class QueryIntegerField(serializers.IntegerField):
    """An integer given as decimal digits (a query string's), nothing else: not ``1.0``, ``+1`` or `` 1``."""

    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, bool) or not (isinstance(data, int) or (isinstance(data, str) and _DIGITS.fullmatch(data))):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictIntegerField(serializers.IntegerField):
    """A JSON integer only (DRF's IntegerField also takes ``"3"``, ``3.0`` and ``true``)."""

    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


class IsoDateField(serializers.DateField):
    """A date as ``YYYY-MM-DD`` (OpenAPI's ``format: date``) only."""

    def to_internal_value(self, value: Any) -> date:
        parsed = parse_iso_date(value) if isinstance(value, str) else None
        if parsed is None:
            self.fail("invalid", format="YYYY-MM-DD")
        return parsed


class Rfc3339DateTimeField(serializers.DateTimeField):
    """An RFC 3339 date-time with its offset (OpenAPI's ``format: date-time``), kept in that offset."""

    def to_internal_value(self, value: Any) -> datetime:
        parsed = parse_rfc3339(value) if isinstance(value, str) else None
        if parsed is None:
            self.fail("invalid", format="RFC 3339, e.g. 2026-11-22T10:15:00+01:00")
        return parsed


class StrictBooleanField(serializers.BooleanField):
    """JSON ``true`` or ``false`` only."""

    def to_internal_value(self, data: Any) -> bool:
        if not isinstance(data, bool):
            self.fail("invalid", input=data)
        return data


class StrictCharField(serializers.CharField):
    """A JSON string only (DRF's CharField also takes numbers); never trimmed."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("trim_whitespace", False)
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)
