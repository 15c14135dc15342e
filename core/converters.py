from typing import Any

MAX_ID = 2**63 - 1  # PostgreSQL's bigint


class DatabaseIdConverter:
    """A path segment that can be a row id: digits within PostgreSQL's bigint.

    A longer number does not match the route, so it is a 404 like any
    unknown id, rather than an overflow in the database.
    """

    regex = "[0-9]{1,19}"
    # How the OpenAPI document shows it (ids start at 1; 0 matches the route and is a 404).
    schema: dict[str, Any] = {"type": "integer", "format": "int64", "minimum": 1, "maximum": MAX_ID}

    def to_python(self, value: str) -> int:
        number = int(value)
        if number > MAX_ID:
            raise ValueError("beyond bigint")
        return number

    def to_url(self, value: int) -> str:
        return str(value)
