"""PoolGame moves to the pools app (pools/migrations/0001_initial.py takes it over, table and all)."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("lotteries", "0003_staff_permissions"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(state_operations=[migrations.DeleteModel(name="PoolGame")]),
    ]
