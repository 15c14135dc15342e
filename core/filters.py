"""Query-string filters that refuse what they cannot read, instead of ignoring it.

django-filter skips a filter given empty (``?date=``) and its date filters
read every format of ``DATE_INPUT_FORMATS``; here an empty value is a 400,
dates are ``YYYY-MM-DD`` and ids integers within bigint, as documented.
"""

from datetime import date
from typing import Any

import django_filters
from django import forms
from drf_spectacular.utils import extend_schema_field

from core.converters import MAX_ID
from core.fields import parse_iso_date


class StrictFilterSet(django_filters.FilterSet):
    """A filter set whose filters, when present in the query, must have a value."""

    def is_valid(self) -> bool:
        valid = bool(super().is_valid())
        for name in self.filters:
            if name in self.data and self.data.get(name) == "":
                self.form.add_error(name, "This field may not be blank.")
                valid = False
        return valid


class IsoDateFormField(forms.DateField):
    def to_python(self, value: Any) -> date | None:
        if value in self.empty_values:
            return None
        parsed = parse_iso_date(value) if isinstance(value, str) else None
        if parsed is None:
            raise forms.ValidationError("Enter a date as YYYY-MM-DD.", code="invalid")
        return parsed


class IsoDateFilter(django_filters.DateFilter):
    """A date as ``YYYY-MM-DD`` only."""

    field_class = IsoDateFormField


class IdFormField(forms.IntegerField):
    """An id: decimal digits, 1 to 2**63 - 1 (not ``1.0`` or ``+1``)."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("min_value", 1)
        kwargs.setdefault("max_value", MAX_ID)
        super().__init__(**kwargs)

    def to_python(self, value: Any) -> int | None:
        if value in self.empty_values:
            return None
        if not (isinstance(value, str) and value.isascii() and value.isdigit()):
            raise forms.ValidationError("Enter a whole number.", code="invalid")
        return int(value)


class IdFilter(django_filters.Filter):
    """A row id, documented as the integer it is (with its ``help_text`` as description)."""

    field_class = IdFormField

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        schema = {"type": "integer", "format": "int64", "minimum": 1, "maximum": MAX_ID}
        if kwargs.get("help_text"):
            schema["description"] = kwargs["help_text"]
        extend_schema_field(schema)(self)
