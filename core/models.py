"""The kernel's one table: live settings (``core.live``)."""

from django.conf import settings
from django.db import models


class LiveSetting(models.Model):
    """A value staff set in admin for a live setting, over its environment default; every process sees it in seconds.

    Only the names registered with ``core.live.register`` are taken; the
    value is kept as text and parsed by the registered parser.
    """

    name = models.CharField(max_length=64, primary_key=True)
    value = models.CharField(max_length=200)
    updated_at = models.DateTimeField(auto_now=True)
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["name"]
        permissions = [
            ("change_chaos_switch", "Can set the chaos switches (the live settings that inject anomalies)"),
        ]

    def __str__(self) -> str:
        return f"{self.name} = {self.value}"
