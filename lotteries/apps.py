from django.apps import AppConfig


class LotteriesConfig(AppConfig):
    name = "lotteries"
