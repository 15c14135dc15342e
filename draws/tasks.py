"""Celery tasks of the draws app: thin wrappers that call one service."""

from celery import shared_task

from draws.services import awards_forfeit_due


@shared_task
def forfeit_awards() -> list[int]:
    """Beat: forfeit the drop awards unclaimed past their deadline or whose winner was banned; promote alternates."""
    return awards_forfeit_due()
