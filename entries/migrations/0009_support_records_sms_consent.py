"""Support records SMS consent given to staff; support and compliance see the consent trail (entries.roles)."""

from django.apps.registry import Apps
from django.contrib.auth.management import create_permissions
from django.db import migrations
from django.db.backends.base.schema import BaseDatabaseSchemaEditor

ADDED = {
    "support": ["change_sms_consent", "view_smsconsentevent"],
    "compliance": ["view_smsconsentevent"],
}


def _permissions(apps: Apps, codenames: list[str]) -> list[object]:
    Permission = apps.get_model("auth", "Permission")
    return [Permission.objects.get(content_type__app_label="entries", codename=name) for name in codenames]


def add(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    app_config = apps.get_app_config("entries")
    app_config.models_module = True  # a migration's app stub has none; create_permissions skips apps without
    create_permissions(app_config, apps=apps, verbosity=0)
    app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    for role, codenames in ADDED.items():
        Group.objects.get(name=role).permissions.add(*_permissions(apps, codenames))


def remove(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    Group = apps.get_model("auth", "Group")
    for role, codenames in ADDED.items():
        Group.objects.get(name=role).permissions.remove(*_permissions(apps, codenames))


class Migration(migrations.Migration):
    dependencies = [
        ("entries", "0008_normalise_phone_numbers"),
        ("entries", "0005_staff_roles"),
    ]

    operations = [migrations.RunPython(add, remove)]
