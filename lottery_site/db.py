"""Bulk writes for the hot paths, where the ORM's per-object cost dominates.

PostgreSQL's COPY takes rows without SQL text to parse or values to quote;
ids come from the table's own sequence beforehand when rows refer to each
other. Callers run inside their transaction; constraints and triggers apply
as for any insert.
"""

from collections.abc import Iterable, Sequence
from typing import Any

from django.db import connection
from django.db.models import Model


def copy_rows(table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """Insert rows into ``table`` with COPY, in order. ``table`` and ``columns`` are code, never input."""
    statement = f"COPY {table} ({', '.join(columns)}) FROM STDIN"
    with connection.cursor() as cursor, cursor.copy(statement) as copy:
        for row in rows:
            copy.write_row(row)


def copy_objects(objects: Sequence[Model]) -> None:
    """Insert unsaved instances of one model with COPY, as ``save()`` would store them.

    Their primary keys must be set (``next_ids``); defaults come from the
    instances, ``auto_now`` and ``auto_now_add`` are applied, and each value
    is prepared by its field, as for an ORM insert.
    """
    if not objects:
        return
    meta = type(objects[0])._meta
    fields = meta.concrete_fields
    if any(obj.pk is None for obj in objects):
        raise ValueError(f"copy_objects needs the primary keys of {meta.label} set (see next_ids)")
    copy_rows(
        meta.db_table,
        [field.column for field in fields],
        ([field.get_db_prep_save(field.pre_save(obj, True), connection) for field in fields] for obj in objects),
    )


def next_ids(table: str, count: int) -> list[int]:
    """Reserve ``count`` ids from the sequence of ``table``'s id column, in ascending order."""
    if count == 0:
        return []
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT nextval(pg_get_serial_sequence(%s, 'id')) FROM generate_series(1, %s) ORDER BY 1", [table, count]
        )
        return [row[0] for row in cursor.fetchall()]
