"""Stake moves to the pools app (pools/migrations/0001_initial.py takes it over, table and all)."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("entries", "0005_staff_roles"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(state_operations=[migrations.DeleteModel(name="Stake")]),
    ]
