# The inbox's retention purge walks it by age. Built concurrently: a plain
# CREATE INDEX would block every stake batch's inbox insert while it scans.

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("outbox", "0006_dead_letter_digest")]

    operations = [
        AddIndexConcurrently(
            model_name="inboxmessage", index=models.Index(fields=["received_at"], name="inbox_by_age")
        ),
    ]
