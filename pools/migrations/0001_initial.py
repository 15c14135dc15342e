"""The pool wing's models, taken over from entries (Stake) and lotteries (PoolGame) with their tables.

Nothing changes in the database but the content types, which move to this
app: the permissions hang on them, so every group and staff member keeps
what they held (``entries.view_stake`` is now ``pools.view_stake``, and so on).
"""

import django.db.models.deletion
from django.apps.registry import Apps
from django.conf import settings
from django.db import migrations, models
from django.db.backends.base.schema import BaseDatabaseSchemaEditor

MOVED = [("entries", "stake"), ("lotteries", "poolgame")]


def _move(apps: Apps, *, forward: bool) -> None:
    content_type = apps.get_model("contenttypes", "ContentType")
    for old_label, model in MOVED:
        source, target = (old_label, "pools") if forward else ("pools", old_label)
        content_type.objects.filter(app_label=source, model=model).update(app_label=target)


def move_content_types(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    _move(apps, forward=True)


def move_content_types_back(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    _move(apps, forward=False)


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        ("contenttypes", "0002_remove_content_type_name"),
        ("entries", "0006_stake_moves_to_pools"),
        ("lotteries", "0004_poolgame_moves_to_pools"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="PoolGame",
                    fields=[
                        ("game_id", models.CharField(max_length=100, primary_key=True, serialize=False)),
                        (
                            "pool_size",
                            models.PositiveIntegerField(help_text="Distinct players that fill a pool (at least 2)."),
                        ),
                        (
                            "payout_ratio",
                            models.DecimalField(
                                decimal_places=4,
                                help_text="Share of the pot paid to the winner, e.g. 0.9000.",
                                max_digits=5,
                            ),
                        ),
                        ("updated_at", models.DateTimeField(auto_now=True)),
                    ],
                    options={
                        "db_table": "lotteries_poolgame",
                        "constraints": [
                            models.CheckConstraint(condition=models.Q(("pool_size__gte", 2)), name="pool_game_size"),
                            models.CheckConstraint(
                                condition=models.Q(("payout_ratio__gt", 0), ("payout_ratio__lte", 1)),
                                name="pool_game_ratio",
                            ),
                        ],
                    },
                ),
                migrations.CreateModel(
                    name="Stake",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID"),
                        ),
                        ("stake_id", models.CharField(max_length=100, unique=True)),
                        ("game_id", models.CharField(max_length=100)),
                        ("amount", models.DecimalField(decimal_places=4, max_digits=18)),
                        ("currency", models.CharField(max_length=3)),
                        ("occurred_at", models.DateTimeField()),
                        ("created_at", models.DateTimeField(auto_now_add=True)),
                        (
                            "ballot",
                            models.ForeignKey(
                                blank=True,
                                null=True,
                                on_delete=django.db.models.deletion.PROTECT,
                                related_name="stakes",
                                to="entries.ballot",
                            ),
                        ),
                        (
                            "lottery",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.PROTECT,
                                related_name="stakes",
                                to="lotteries.lottery",
                            ),
                        ),
                        (
                            "player",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.PROTECT,
                                related_name="stakes",
                                to=settings.AUTH_USER_MODEL,
                            ),
                        ),
                    ],
                    options={
                        "db_table": "entries_stake",
                        "indexes": [models.Index(fields=["lottery", "id"], name="entries_sta_lottery_98c275_idx")],
                        "constraints": [
                            models.CheckConstraint(condition=models.Q(("amount__gt", 0)), name="stake_amount_positive")
                        ],
                        "permissions": [("produce_stake", "Can produce a test stake to Kafka (POST /api/v1/stakes)")],
                    },
                ),
            ]
        ),
        migrations.RunPython(move_content_types, move_content_types_back),
    ]
