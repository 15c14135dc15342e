"""The operations role creates drops: it gains ``lotteries.create_drop`` (entries.roles)."""

from django.apps.registry import Apps
from django.contrib.auth.management import create_permissions
from django.db import migrations
from django.db.backends.base.schema import BaseDatabaseSchemaEditor

ROLE, PERMISSION = "operations", ("lotteries", "create_drop")


def _permission(apps: Apps):  # type: ignore[no-untyped-def]
    app_config = apps.get_app_config(PERMISSION[0])
    app_config.models_module = True  # a migration's app stub has none; create_permissions skips apps without
    create_permissions(app_config, apps=apps, verbosity=0)
    app_config.models_module = None
    Permission = apps.get_model("auth", "Permission")
    return Permission.objects.get(content_type__app_label=PERMISSION[0], codename=PERMISSION[1])


def grant(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    group, _ = apps.get_model("auth", "Group").objects.get_or_create(name=ROLE)
    group.permissions.add(_permission(apps))


def revoke(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    group = apps.get_model("auth", "Group").objects.filter(name=ROLE).first()
    if group is not None:
        group.permissions.remove(_permission(apps))


class Migration(migrations.Migration):
    dependencies = [
        ("entries", "0009_support_records_sms_consent"),
        ("lotteries", "0005_drops"),
    ]

    operations = [migrations.RunPython(grant, revoke)]
