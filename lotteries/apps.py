from django.apps import AppConfig


class LotteriesConfig(AppConfig):
    name = "lotteries"

    def ready(self) -> None:
        from lotteries import metrics

        metrics.register()
