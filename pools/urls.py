"""The pool wing's API: the stake door (under /api/v1/)."""

from django.urls import path

from pools.apis import StakeProduceApi

urlpatterns = [
    path("stakes", StakeProduceApi.as_view(), name="stake-produce"),
]
