from core.errors import NotFound


class DrawNotFound(NotFound):
    code = "draw_not_found"
    default_message = "No such draw."
