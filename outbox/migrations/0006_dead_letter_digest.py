"""Dead letters are identified by their offsets and a digest of the message, not by the offsets alone.

A recreated topic, or a broker that lost its log, hands old offsets to new
messages; a new bad message at a reused offset must be stored, not taken for
a redelivery of the old one. Existing letters get the digest of what they hold.
"""

import hashlib
import json

from django.apps.registry import Apps
from django.db import migrations, models
from django.db.backends.base.schema import BaseDatabaseSchemaEditor


def digest_of(key: bytes | None, value: bytes, headers: dict[str, str]) -> str:
    # The same function as outbox.inbox.message_digest, frozen here as it stood.
    digest = hashlib.sha256()
    encoded_headers = json.dumps(headers, sort_keys=True, separators=(",", ":")).encode()
    for part in (b"" if key is None else b"k" + key, value, encoded_headers):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


def fill_digests(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    DeadLetter = apps.get_model("outbox", "DeadLetter")
    for letter in DeadLetter.objects.filter(digest="").iterator():
        key = bytes(letter.key) if letter.key is not None else None
        letter.digest = digest_of(key, bytes(letter.value), letter.headers or {})
        letter.save(update_fields=["digest"])


class Migration(migrations.Migration):
    dependencies = [("outbox", "0005_staff_permissions")]

    operations = [
        migrations.AddField(
            model_name="deadletter", name="digest", field=models.CharField(max_length=64, default=""), preserve_default=False
        ),
        migrations.RunPython(fill_digests, migrations.RunPython.noop),
        migrations.RemoveConstraint(model_name="deadletter", name="dead_letter_once_per_message"),
        migrations.AddConstraint(
            model_name="deadletter",
            constraint=models.UniqueConstraint(
                condition=models.Q(("status", "open")),
                fields=("topic", "partition", "offset", "digest"),
                name="dead_letter_once_per_message",
            ),
        ),
    ]
