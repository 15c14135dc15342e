from django.apps import AppConfig


class DrawsConfig(AppConfig):
    name = "draws"

    def ready(self) -> None:
        # A ban forfeits the player's unclaimed drop awards at once (entries sits below and asks through ON_BAN).
        from draws.services import awards_forfeit_of_player
        from entries.services import ON_BAN

        ON_BAN.append(awards_forfeit_of_player)
