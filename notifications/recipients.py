"""How a phone number appears in lists and logs: never whole."""


def masked(phone_number: str) -> str:
    """The number with all but its first three and last two characters starred ("+44*******89").

    Numbers of 6 characters or fewer show only their last one.
    """
    if len(phone_number) <= 6:
        return "*" * max(len(phone_number) - 1, 0) + phone_number[-1:]
    return phone_number[:3] + "*" * (len(phone_number) - 5) + phone_number[-2:]
