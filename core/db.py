"""Bulk writes for the hot paths, where the ORM's per-object cost dominates.

PostgreSQL's COPY takes rows without SQL text to parse or values to quote;
ids come from the table's own sequence beforehand when rows refer to each
other. Callers run inside their transaction; constraints and triggers apply
as for any insert.

The table and its columns come from the model's ``_meta``, never from a
list written beside it: a row is a mapping of field names (``attname``:
``lottery_id``, not ``lottery``) to values, and a field that a row leaves
out gets what the ORM would give it (its default, ``now`` for
``auto_now``/``auto_now_add``, NULL when nullable; an auto primary key its
sequence). Leaving out a field that has none of these is an error.
"""

import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import chain
from operator import itemgetter
from typing import Any

from django.db import IntegrityError, connection, models
from django.utils import timezone

Row = Mapping[str, Any]

_CHOICE_VALUE = re.compile(r"[a-z0-9_]+")


def sql(template: str, **names: type[models.Model] | str) -> str:
    """SQL text whose tables and state values come from the code.

    ``{Ballot}`` becomes ``"entries_ballot"`` and ``{valid}`` becomes ``'valid'``.
    A model stands for its table (quoted), a ``TextChoices`` value for its
    SQL string literal. Called once, at import: the text is a constant, and
    values from requests still go in as parameters (``%(name)s``). Only
    lower-case choice values are taken, so no quote can slip in.
    """
    written: dict[str, str] = {}
    for name, value in names.items():
        if isinstance(value, type) and issubclass(value, models.Model):
            written[name] = connection.ops.quote_name(value._meta.db_table)
        elif isinstance(value, str) and _CHOICE_VALUE.fullmatch(value):
            written[name] = f"'{value}'"
        else:
            raise ValueError(f"{name}={value!r} is neither a model nor a choice value")
    return template.format(**written)


# (database, table, columns) -> the columns' type oids, read once per process.
_column_types: dict[tuple[str, str, tuple[str, ...]], list[int]] = {}


@dataclass(frozen=True)
class _Layout:
    """How rows that give ``given`` fields map onto a model's table: the given columns, then the defaulted ones."""

    table: str
    columns: tuple[str, ...]
    given: Callable[[Row], tuple[Any, ...]]  # the row's values, in column order (operator.itemgetter: C speed)
    defaults: tuple[Callable[[], Any], ...]  # for the columns after them, filled in once per write

    def fill(self) -> tuple[Any, ...]:
        return tuple(default() for default in self.defaults)


_layouts: dict[tuple[type[models.Model], frozenset[str]], _Layout] = {}


def _layout(model: type[models.Model], given: frozenset[str]) -> _Layout:
    key = (model, given)
    if key not in _layouts:
        fields = model._meta.concrete_fields
        unknown = given - {field.attname for field in fields}
        if unknown:
            raise ValueError(f"{model.__name__} has no field {', '.join(sorted(unknown))}")
        named = [field for field in fields if field.attname in given]
        left_out = [
            field
            for field in fields
            if field.attname not in given
            and not (field.primary_key and isinstance(field, models.AutoField | models.BigAutoField))  # its sequence
        ]
        getter = itemgetter(*(field.attname for field in named))
        _layouts[key] = _Layout(
            table=model._meta.db_table,
            columns=tuple(column_of(field) for field in [*named, *left_out]),
            given=getter if len(named) > 1 else lambda row: (getter(row),),
            defaults=tuple(_default_of(model, field) for field in left_out),
        )
    return _layouts[key]


def column_of(field: Any) -> str:
    """A concrete field's column name (``lottery_id`` for ``lottery``)."""
    column: str | None = field.column
    assert column is not None, f"{field} has no column"
    return column


def _default_of(model: type[models.Model], field: Any) -> Callable[[], Any]:
    """What the ORM would store for a field left out: its default, ``now`` for ``auto_now*``, "" or NULL."""
    if field.has_default():
        return field.get_default  # type: ignore[no-any-return]
    if getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
        return timezone.now
    empty = field.get_default()  # "" for a text field, None otherwise
    if empty is None and not field.null:
        raise ValueError(f"a row of {model.__name__} must give {field.attname}: it has no default")
    return lambda: empty


def _first_and_rest(rows: Iterable[Row]) -> tuple[Row | None, Iterator[Row]]:
    iterator = iter(rows)
    first = next(iterator, None)
    return first, iterator


def copy_rows(model: type[models.Model], rows: Iterable[Row]) -> int:
    """Insert rows into ``model``'s table with COPY, in order; returns how many.

    Every row gives the same fields (the first one decides which). The binary
    format: each value is converted by its column's type, in C, about three
    times faster than the text format. Values are Python objects of the
    column's type (a ``Decimal`` for numeric, a ``UUID`` for uuid, a dict or
    list for json: a ``str`` there would be stored as a JSON string).
    """
    first, rest = _first_and_rest(rows)
    if first is None:
        return 0
    layout = _layout(model, frozenset(first))
    filled = layout.fill()
    types = _types_of(layout.table, layout.columns)
    statement = f"COPY {layout.table} ({', '.join(layout.columns)}) FROM STDIN (FORMAT BINARY)"
    count = 0
    # Django wraps execute() but not copy(): without this, a unique violation
    # would escape as psycopg's error, not IntegrityError (a DatabaseError the
    # callers retry), and Django would not notice a broken connection.
    with connection.wrap_database_errors, connection.cursor() as cursor, cursor.copy(statement) as copy:
        copy.set_types(types)
        given = layout.given
        for row in chain([first], rest):
            copy.write_row(given(row) + filled)
            count += 1
    return count


def insert_rows(model: type[models.Model], rows: Sequence[Row]) -> int:
    """Insert a few rows with one multi-row INSERT (one round trip, no COPY set-up); same rows as ``copy_rows``."""
    if not rows:
        return 0
    layout = _layout(model, frozenset(rows[0]))
    filled = layout.fill()
    placeholders = "(" + ", ".join(["%s"] * len(layout.columns)) + ")"
    statement = (
        f"INSERT INTO {layout.table} ({', '.join(layout.columns)}) VALUES "  # noqa: S608 (names from _meta only)
        + ", ".join([placeholders] * len(rows))
    )
    with connection.cursor() as cursor:
        cursor.execute(statement, [value for row in rows for value in layout.given(row) + filled])
    return len(rows)


# Up to this many rows go in with one INSERT (one round trip, no COPY set-up); more go in with COPY.
COPY_THRESHOLD = 20


def write_rows(model: type[models.Model], rows: Sequence[Row]) -> int:
    """Insert rows the cheaper way for their number: ``insert_rows`` for a few, ``copy_rows`` for many."""
    return insert_rows(model, rows) if len(rows) <= COPY_THRESHOLD else copy_rows(model, rows)


def object_row(obj: models.Model) -> dict[str, Any]:
    """An unsaved model instance as a row for ``copy_rows``: every concrete field, ``auto_now*`` ones set now."""
    row: dict[str, Any] = {}
    for field in obj._meta.concrete_fields:
        if field.primary_key and getattr(obj, field.attname) is None:
            continue  # left to the sequence
        row[field.attname] = field.pre_save(obj, add=True)
    return row


def _types_of(table: str, columns: tuple[str, ...]) -> list[int]:
    key = (connection.settings_dict["NAME"], table, columns)
    if key not in _column_types:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT attname, atttypid FROM pg_attribute"
                " WHERE attrelid = %s::regclass AND attname = ANY(%s) AND attnum > 0 AND NOT attisdropped",
                [table, list(columns)],
            )
            found = dict(cursor.fetchall())
        missing = [column for column in columns if column not in found]
        if missing:
            raise ValueError(f"{table} has no column {', '.join(missing)}")
        _column_types[key] = [found[column] for column in columns]
    return _column_types[key]


def next_ids(model: type[models.Model], count: int) -> list[int]:
    """Reserve ``count`` ids from the sequence of ``model``'s primary key, in ascending order."""
    if count == 0:
        return []
    pk = model._meta.pk
    assert pk is not None
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT nextval(pg_get_serial_sequence(%s, %s)) FROM generate_series(1, %s) ORDER BY 1",
            [model._meta.db_table, pk.column, count],
        )
        return [row[0] for row in cursor.fetchall()]


def violated_constraint(error: IntegrityError) -> str | None:
    """The name of the constraint an INSERT or UPDATE broke, as PostgreSQL reports it (psycopg's diagnostics)."""
    diag = getattr(error.__cause__, "diag", None)
    return getattr(diag, "constraint_name", None)
