from core.errors import Conflict, NotFound


class DrawNotFound(NotFound):
    code = "draw_not_found"
    default_message = "No such draw."


class AwardNotFound(NotFound):
    code = "award_not_found"
    default_message = "No such award of yours."


class AwardNotClaimable(Conflict):
    code = "award_not_claimable"
    default_message = "This award cannot be claimed: it is not a drop's, or it was forfeited or its window ended."
