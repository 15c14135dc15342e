"""The load generator's API (under /api/v1/): the stats endpoint, the ground truth, the switches, players, trigger."""

from django.urls import path

from loadgen.apis import AnomaliesApi, ChaosApi, PlayersProvisionApi, StatsApi, TriggerApi

urlpatterns = [
    path("stats", StatsApi.as_view(), name="stats"),
    path("loadgen/anomalies", AnomaliesApi.as_view(), name="loadgen-anomalies"),
    path("loadgen/chaos", ChaosApi.as_view(), name="loadgen-chaos"),
    path("loadgen/players", PlayersProvisionApi.as_view(), name="loadgen-players"),
    path("loadgen/trigger", TriggerApi.as_view(), name="loadgen-trigger"),
]
