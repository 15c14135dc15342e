class DatabaseIdConverter:
    """A path segment that can be a row id: digits within PostgreSQL's bigint.

    A longer number does not match the route, so it is a 404 like any
    unknown id, rather than an overflow in the database.
    """

    regex = "[0-9]{1,19}"
    _max = 2**63 - 1

    def to_python(self, value: str) -> int:
        number = int(value)
        if number > self._max:
            raise ValueError("beyond bigint")
        return number

    def to_url(self, value: int) -> str:
        return str(value)
