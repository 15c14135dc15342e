"""Each stake keeps the traceparent of its trace, so the pool it fills can link to it.

A column with a constant default: PostgreSQL adds it without rewriting the table.
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("pools", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="stake",
            name="traceparent",
            field=models.CharField(blank=True, default="", max_length=55),
        ),
    ]
