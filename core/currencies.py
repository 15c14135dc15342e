"""Currencies a stake may be in, with their minor units (ISO 4217)."""

from decimal import ROUND_DOWN, Decimal

MINOR_UNITS: dict[str, int] = {
    "AUD": 2, "BGN": 2, "BHD": 3, "BRL": 2, "CAD": 2, "CHF": 2, "CLP": 0, "CNY": 2, "CZK": 2, "DKK": 2,
    "EUR": 2, "GBP": 2, "HKD": 2, "HUF": 2, "ILS": 2, "INR": 2, "ISK": 0, "JOD": 3, "JPY": 0, "KRW": 0,
    "KWD": 3, "MXN": 2, "NOK": 2, "NZD": 2, "OMR": 3, "PLN": 2, "RON": 2, "SEK": 2, "SGD": 2, "TND": 3,
    "TRY": 2, "UAH": 2, "USD": 2, "ZAR": 2,
}  # fmt: skip


def is_known(currency: str) -> bool:
    return currency in MINOR_UNITS


def quantum(currency: str) -> Decimal:
    """The smallest amount of the currency: 0.01 for EUR, 1 for JPY, 0.001 for KWD."""
    return Decimal(1).scaleb(-MINOR_UNITS[currency])


def round_down(amount: Decimal, currency: str) -> Decimal:
    """``amount`` rounded down to the currency's minor unit (a payout never rounds up)."""
    return amount.quantize(quantum(currency), rounding=ROUND_DOWN)


def format_money(amount: Decimal, currency: str) -> str:
    """``amount`` as a plain decimal string with exactly the currency's minor digits.

    "18.90" EUR, "1500" JPY, "1.234" BHD; never scientific notation. Formatting
    never changes a value: every stored amount already has at most the minor
    digits (stakes are validated, payouts rounded down where computed), so an
    amount with more raises ``ValueError`` instead of being silently rounded.
    """
    if not is_known(currency):
        raise ValueError(f"unknown currency {currency!r}")
    shown = amount.quantize(quantum(currency), rounding=ROUND_DOWN)
    if shown != amount:
        raise ValueError(f"{amount} {currency} has more than the currency's {MINOR_UNITS[currency]} minor digits")
    return f"{shown + 0:f}"  # + 0 turns a negative zero into "0.00"
