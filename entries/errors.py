from core.errors import ApplicationError, Conflict, NotFound, PermissionDenied


class PlayerNotFound(NotFound):
    code = "player_not_found"
    default_message = "No such player."


class PlayerBanned(PermissionDenied):
    code = "player_banned"
    default_message = "This player is banned and cannot submit ballots."


class LoginLockedOut(ApplicationError):
    code = "login_locked_out"
    status_code = 429
    default_message = "Too many failed logins for this username from this address; try again later."


class BallotLimitReached(Conflict):
    code = "ballot_limit_reached"
    default_message = "The player already has the maximum number of ballots in this lottery."


class DuplicateEntry(Conflict):
    code = "duplicate_entry"
    default_message = "Another player's ballot in this lottery already uses this phone number or account."


class IdempotencyKeyReused(ApplicationError):
    code = "idempotency_key_reused"
    status_code = 422
    default_message = "This Idempotency-Key was already used for a ballot in another lottery."


class BanReasonRequired(ApplicationError):
    code = "ban_reason_required"
    status_code = 400
    default_message = "A reason is required to ban or unban a player."


class InvalidPhoneNumber(ApplicationError):
    code = "invalid_phone_number"
    status_code = 400
    default_message = "This is not a valid phone number."


class PhoneNumberRequired(Conflict):
    code = "phone_number_required"
    default_message = "Drop announcements go by SMS: the player needs a phone number on file first."


class PhoneNumberOnFile(Conflict):
    code = "phone_number_on_file"
    default_message = "A phone number is already on file; staff change it in admin, not the API."
