"""Helpers for the admin tests: a changelist's address, running a changelist action, the messages shown."""

from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.urls import reverse


def changelist(model: str) -> str:
    return reverse(f"admin:{model}_changelist")


def run_action(client, model: str, action: str, objects, **extra):
    data = {"action": action, ACTION_CHECKBOX_NAME: [obj.pk for obj in objects], **extra}
    return client.post(changelist(model), data)


def messages_of(response) -> list[str]:
    return [str(message) for message in response.context["messages"]] if response.context else []
