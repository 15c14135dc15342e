from core.errors import ApplicationError, Conflict


class StatsUnavailable(ApplicationError):
    """An injected burst: the stats endpoint answers 506 for a few consecutive requests (the first seed's)."""

    code = "stats_unavailable"
    status_code = 506
    default_message = "Statistics are unavailable for a moment (an injected anomaly); retry after Retry-After."
    sends_retry_after = True


class StatsBurstActive(Conflict):
    code = "stats_burst_active"
    default_message = "A stats 506 burst is still being answered; a new one waits for it to end."


class AnomalySwitchedOff(Conflict):
    code = "anomaly_switched_off"
    default_message = "This anomaly's chaos switch is off."
