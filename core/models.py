"""The kernel's tables: live settings (``core.live``) and hourly tallies (``core.tallies``)."""

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


class HourlyTally(models.Model):
    """How often something that leaves no row of its own happened in an hour (``core.tallies``).

    A refused ballot, for instance, stores nothing (the rules say so): its
    count lives here, by the UTC hour it happened in, the measure, a dimension
    (a lottery kind) and a code. Rows are added to in batches per process,
    never once per event.
    """

    hour = models.DateTimeField(help_text="The start of the UTC hour.")
    measure = models.CharField(max_length=64)
    dimension = models.CharField(max_length=32, blank=True, default="")
    code = models.CharField(max_length=64, blank=True, default="")
    count = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(name="tally_once_per_hour", fields=["hour", "measure", "dimension", "code"])
        ]

    def __str__(self) -> str:
        return f"{self.measure} {self.dimension} {self.code} at {self.hour:%Y-%m-%d %H}:00: {self.count}"
