"""Serializer fields shared by the apps' APIs."""

from decimal import Decimal
from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.fields import get_attribute

from lotteries.currencies import format_money


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
