from core.errors import Conflict, NotFound


class NotificationNotFound(NotFound):
    code = "notification_not_found"
    default_message = "No such notification."


class NotificationNotFailed(Conflict):
    code = "notification_not_failed"
    default_message = (
        "Only a failed notification can be sent again: a sent one was delivered, a pending one is on its way."
    )
