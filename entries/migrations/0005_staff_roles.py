"""The staff roles (support, operations, compliance) as groups, with their permissions.

A snapshot of ``entries.roles.ROLES`` as it stood when written: a later change
of the roles comes with a migration of its own. Permissions are created here
first, since Django otherwise creates them only after every migration ran.
"""

from django.apps.registry import Apps
from django.contrib.auth.management import create_permissions
from django.db import migrations
from django.db.backends.base.schema import BaseDatabaseSchemaEditor

ROLES = {
    "support": [
        "entries.view_player",
        "entries.view_ballot",
        "entries.view_playerbanevent",
        "entries.view_stake",
        "lotteries.view_lottery",
        "lotteries.view_lotterytransition",
        "lotteries.view_poolgame",
        "draws.view_draw",
        "draws.view_lotteryaward",
        "entries.ban_player",
        "entries.unban_player",
        "axes.view_accessattempt",
        "axes.delete_accessattempt",
    ],
    "operations": [
        "lotteries.view_lottery",
        "lotteries.view_lotterytransition",
        "lotteries.view_poolgame",
        "draws.view_draw",
        "draws.view_lotteryaward",
        "outbox.view_outboxevent",
        "outbox.view_inboxmessage",
        "outbox.view_deadletter",
        "outbox.view_consumercounter",
        "django_celery_beat.view_periodictask",
        "entries.view_stake",
        "lotteries.close_lottery",
        "lotteries.force_close_lottery",
        "lotteries.add_poolgame",
        "lotteries.change_poolgame",
        "outbox.replay_outbox_event",
        "outbox.replay_dead_letter",
        "entries.produce_stake",
    ],
    "compliance": [
        "entries.view_player",
        "entries.view_ballot",
        "entries.view_playerbanevent",
        "entries.view_stake",
        "lotteries.view_lottery",
        "lotteries.view_lotterytransition",
        "lotteries.view_poolgame",
        "draws.view_draw",
        "draws.view_lotteryaward",
        "outbox.view_outboxevent",
        "outbox.view_inboxmessage",
        "outbox.view_deadletter",
        "outbox.view_consumercounter",
        "django_celery_beat.view_periodictask",
        "django_celery_beat.view_crontabschedule",
        "django_celery_beat.view_intervalschedule",
        "django_celery_beat.view_solarschedule",
        "django_celery_beat.view_clockedschedule",
        "axes.view_accessattempt",
        "axes.view_accesslog",
        "axes.view_accessfailurelog",
        "auth.view_group",
        "auth.view_permission",
    ],
}


def create_roles(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    for label in sorted({name.split(".")[0] for names in ROLES.values() for name in names}):
        app_config = apps.get_app_config(label)
        app_config.models_module = True  # a migration's app stub has none; create_permissions skips apps without
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for role, names in ROLES.items():
        group, _ = Group.objects.get_or_create(name=role)
        permissions = []
        for name in names:
            label, codename = name.split(".")
            permissions.append(Permission.objects.get(content_type__app_label=label, codename=codename))
        group.permissions.set(permissions)


def remove_roles(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    apps.get_model("auth", "Group").objects.filter(name__in=ROLES).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("entries", "0004_staff_permissions"),
        ("lotteries", "0003_staff_permissions"),
        ("draws", "0003_draw_immutable"),
        ("outbox", "0005_staff_permissions"),
        ("django_celery_beat", "0014_remove_clockedschedule_enabled"),
        ("axes", "0008_accessfailurelog"),
    ]

    operations = [migrations.RunPython(create_roles, remove_roles)]
