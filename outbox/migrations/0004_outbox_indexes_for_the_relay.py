# The relay's claim probes parked (failed) rows by key; the (event_type,
# created_at) index served no query. Built and dropped concurrently: a plain
# CREATE INDEX would block every insert into the outbox (every ballot, every
# stake batch) while it scans the table.

from django.contrib.postgres.operations import AddIndexConcurrently, RemoveIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("outbox", "0003_dead_letter_unique_while_open"),
    ]

    operations = [
        RemoveIndexConcurrently(
            model_name="outboxevent",
            name="outbox_outb_event_t_ad4dea_idx",
        ),
        AddIndexConcurrently(
            model_name="outboxevent",
            index=models.Index(condition=models.Q(("state", "failed")), fields=["key", "id"], name="outbox_failed_by_key"),
        ),
    ]
