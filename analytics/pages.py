"""The analytics app's staff pages (the operations page, under /admin/)."""

from django.urls import path

from analytics.views import operations

urlpatterns = [path("", operations, name="operations")]
