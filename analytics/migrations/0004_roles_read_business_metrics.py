"""Operations and compliance read the business metrics and the operations page (entries.roles)."""

from django.apps.registry import Apps
from django.contrib.auth.management import create_permissions
from django.db import migrations
from django.db.backends.base.schema import BaseDatabaseSchemaEditor

ROLES, PERMISSION = ("operations", "compliance"), ("analytics", "view_business_metrics")


def _permission(apps: Apps):  # type: ignore[no-untyped-def]
    app_config = apps.get_app_config(PERMISSION[0])
    app_config.models_module = True  # a migration's app stub has none; create_permissions skips apps without
    create_permissions(app_config, apps=apps, verbosity=0)
    app_config.models_module = None
    Permission = apps.get_model("auth", "Permission")
    return Permission.objects.get(content_type__app_label=PERMISSION[0], codename=PERMISSION[1])


def grant(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    permission = _permission(apps)
    for role in ROLES:
        group, _ = apps.get_model("auth", "Group").objects.get_or_create(name=role)
        group.permissions.add(permission)


def revoke(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    permission = _permission(apps)
    for group in apps.get_model("auth", "Group").objects.filter(name__in=ROLES):
        group.permissions.remove(permission)


class Migration(migrations.Migration):
    dependencies = [
        ("analytics", "0003_views"),
        ("entries", "0010_operations_create_drops"),
    ]

    operations = [migrations.RunPython(grant, revoke)]
