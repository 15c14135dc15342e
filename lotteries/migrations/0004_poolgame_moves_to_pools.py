"""PoolGame moves to the pools app (pools/migrations/0001_initial.py takes it over, table and all)."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("lotteries", "0003_staff_permissions"),
        # The roles' snapshot (entries 0005) names lotteries.view_poolgame and the pool games' permissions as
        # they stood before the move: it must run first, whatever else a new migration pulls in.
        ("entries", "0005_staff_roles"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(state_operations=[migrations.DeleteModel(name="PoolGame")]),
    ]
