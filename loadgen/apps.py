from django.apps import AppConfig


class LoadgenConfig(AppConfig):
    """The load generator's server side, on the top floor: it drives every app below through their services
    (the trigger) and reads them (the stats). The generator itself is an HTTP client (``loadgen.client``)."""

    name = "loadgen"

    def ready(self) -> None:
        from loadgen import switches
        from loadgen.services import sms_failure_record
        from notifications.gateway import ON_INJECTED_FAILURE

        switches.register()
        # The simulated SMS gateway sits below and tells of each failure it injects through this hook.
        ON_INJECTED_FAILURE.append(sms_failure_record)
