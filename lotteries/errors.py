from core.errors import ApplicationError, Conflict, NotFound


class LotteryNotFound(NotFound):
    code = "lottery_not_found"
    default_message = "No such lottery."


class LotteryClosed(Conflict):
    code = "lottery_closed"
    default_message = "This lottery no longer accepts ballots."


class LotteryNotOpen(Conflict):
    code = "lottery_not_open"
    default_message = "This lottery is not open yet: its entrance window starts at opens_at."


class StakeRequired(Conflict):
    code = "stake_required"
    default_message = "A pool is entered only by staking in its game; it takes no ballots."


class LotteryNotDue(Conflict):
    code = "lottery_not_due"
    default_message = "The lottery's entrance window has not ended; only staff can force an early close."


class InvalidLottery(ApplicationError):
    code = "invalid_lottery"
    status_code = 400
    default_message = "The lottery's settings are not valid."


class DropKeyReused(ApplicationError):
    code = "idempotency_key_reused"
    status_code = 422
    default_message = "This Idempotency-Key was already used for a drop with other terms."
