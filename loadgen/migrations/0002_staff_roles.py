"""The load generator joins the staff roles (entries.roles): operations sets the chaos switches, provisions the
generator's players, triggers drops and records and reads the ground truth; compliance reads it.

Adds only these permissions to the groups (``entries`` 0005 made them) and takes only these away when reversed.
"""

from django.apps.registry import Apps
from django.contrib.auth.management import create_permissions
from django.db import migrations
from django.db.backends.base.schema import BaseDatabaseSchemaEditor

ADDED = {
    "operations": [
        "core.change_chaos_switch",
        "loadgen.view_injectedanomaly",
        "loadgen.record_anomaly",
        "loadgen.provision_players",
        "loadgen.trigger_drop",
    ],
    "compliance": ["loadgen.view_injectedanomaly"],
}


def _permissions(apps: Apps, names: list[str]) -> list[object]:
    Permission = apps.get_model("auth", "Permission")
    return [
        Permission.objects.get(content_type__app_label=name.split(".")[0], codename=name.split(".")[1])
        for name in names
    ]


def add_permissions(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    for label in ("core", "loadgen"):
        app_config = apps.get_app_config(label)
        app_config.models_module = True  # a migration's app stub has none; create_permissions skips apps without
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    for role, names in ADDED.items():
        group, _ = Group.objects.get_or_create(name=role)
        group.permissions.add(*_permissions(apps, names))


def remove_permissions(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    Group = apps.get_model("auth", "Group")
    for role, names in ADDED.items():
        for group in Group.objects.filter(name=role):
            group.permissions.remove(*_permissions(apps, names))


class Migration(migrations.Migration):
    dependencies = [
        ("loadgen", "0001_initial"),
        ("core", "0003_chaos_switch_permission"),
        ("entries", "0005_staff_roles"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(add_permissions, remove_permissions)]
