"""PoolGame moves to the pools app (pools/migrations/0001_initial.py takes it over, table and all)."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("lotteries", "0003_staff_permissions"),
        # The roles' snapshot names lotteries.view_poolgame: it must run while PoolGame is still here.
        ("entries", "0005_staff_roles"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(state_operations=[migrations.DeleteModel(name="PoolGame")]),
    ]
