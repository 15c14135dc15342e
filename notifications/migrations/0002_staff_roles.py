"""The SMS delivery log joins the staff roles (entries.roles): every role sees it, operations sends failed SMS again.

The live settings (``core.live``), which arrive with the SMS gateway's, too:
operations sets them, compliance sees them.

Adds these permissions to the groups (``entries`` 0005 made them) and takes
only these away when reversed, so other apps' changes to the roles stand.
"""

from django.apps.registry import Apps
from django.contrib.auth.management import create_permissions
from django.db import migrations
from django.db.backends.base.schema import BaseDatabaseSchemaEditor

ADDED = {
    "support": ["notifications.view_notification"],
    "operations": [
        "notifications.view_notification",
        "notifications.view_gatewaymessage",
        "notifications.resend_notification",
        "core.view_livesetting",
        "core.add_livesetting",
        "core.change_livesetting",
        "core.delete_livesetting",
    ],
    "compliance": ["notifications.view_notification", "notifications.view_gatewaymessage", "core.view_livesetting"],
}


def _permissions(apps: Apps, names: list[str]) -> list[object]:
    Permission = apps.get_model("auth", "Permission")
    return [
        Permission.objects.get(content_type__app_label=name.split(".")[0], codename=name.split(".")[1])
        for name in names
    ]


def add_permissions(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    for label in ("core", "notifications"):
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
        ("notifications", "0001_initial"),
        ("core", "0001_live_settings"),
        ("entries", "0005_staff_roles"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(add_permissions, remove_permissions)]
