"""The load generator's ground truth: every anomaly injected, with its details, to score a detector against."""

from django.db import models

# The staff permissions of this app, as services and views check them.
RECORD_ANOMALY = "loadgen.record_anomaly"
VIEW_ANOMALIES = "loadgen.view_injectedanomaly"
PROVISION_PLAYERS = "loadgen.provision_players"
TRIGGER_DROP = "loadgen.trigger_drop"


class AnomalyKind(models.TextChoices):
    """What was injected; the first four by the first seed's names for them (its log events)."""

    LOW_PARTICIPATION = "anomalous_low_participation", "a drop with a single entry"
    TRAFFIC_BURST = "anomalous_traffic_burst", "entries at 10-25 a second into one drop"
    STATS_506 = "anomalous_stats_endpoint_506", "consecutive stats requests answered 506"
    SMS_FAILURE = "anomalous_sms_delivery_failure", "an SMS the simulated gateway failed"
    FRAUDULENT_ENTRY = "fraudulent_entry", "an entry copying another entrant's phone number or account"


# The kinds a load generator reports; an SMS failure is the gateway's own record.
REPORTED_KINDS = (
    AnomalyKind.LOW_PARTICIPATION,
    AnomalyKind.TRAFFIC_BURST,
    AnomalyKind.STATS_506,
    AnomalyKind.FRAUDULENT_ENTRY,
)
REPORTED_KIND_CHOICES = [(kind.value, kind.label) for kind in REPORTED_KINDS]


class InjectedAnomaly(models.Model):
    """One anomaly as injected: its kind, the generator run and drop it belongs to, its details.

    Written once, when it is injected (``loadgen.services``); a stats 506
    burst also counts the requests it has answered (``served``) and when the
    first and last were answered. Nothing else changes a row.
    """

    id = models.BigAutoField(primary_key=True)
    kind = models.CharField(max_length=40, choices=AnomalyKind.choices)
    run = models.CharField(max_length=64, blank=True, default="", help_text="The generator run; empty: the platform.")
    lottery = models.ForeignKey("lotteries.Lottery", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    details = models.JSONField(default=dict, blank=True)
    injected_at = models.DateTimeField(help_text="When the platform recorded it.")
    simulated_at = models.DateTimeField(null=True, blank=True, help_text="The generator's simulated clock then.")
    served = models.PositiveIntegerField(default=0, help_text="A 506 burst's: stats requests answered 506 so far.")
    first_served_at = models.DateTimeField(null=True, blank=True)
    last_served_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "injected anomaly"
        verbose_name_plural = "injected anomalies"
        ordering = ["id"]
        permissions = [
            ("record_anomaly", "Can record injected anomalies (the load generator's ground truth)"),
            ("provision_players", "Can provision the load generator's players and their API tokens"),
            ("trigger_drop", "Can trigger a load-generator drop with its entries now"),
        ]
        indexes = [
            models.Index(name="anomaly_by_kind", fields=["kind", "id"]),
            models.Index(name="anomaly_by_run", fields=["run", "id"]),
        ]

    def __str__(self) -> str:
        return f"{self.kind} #{self.pk}"
