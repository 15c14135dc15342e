"""Every staff role sees the broadcasts' progress (entries.roles); only these permissions are added or taken away."""

from django.apps.registry import Apps
from django.contrib.auth.management import create_permissions
from django.db import migrations
from django.db.backends.base.schema import BaseDatabaseSchemaEditor

ADDED = {role: ["notifications.view_broadcast"] for role in ("support", "operations", "compliance")}


def _permissions(apps: Apps, names: list[str]) -> list[object]:
    Permission = apps.get_model("auth", "Permission")
    return [
        Permission.objects.get(content_type__app_label=name.split(".")[0], codename=name.split(".")[1])
        for name in names
    ]


def add_permissions(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    app_config = apps.get_app_config("notifications")
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
    dependencies = [("notifications", "0003_broadcast")]

    operations = [migrations.RunPython(add_permissions, remove_permissions)]
