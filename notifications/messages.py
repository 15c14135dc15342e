"""The texts of the SMS, in one place."""

from draws.models import LotteryAward
from lotteries.models import Lottery


def winner_body(award: LotteryAward, lottery: Lottery) -> str:
    return f"You won {award.prize or lottery.prize} in {lottery.title} (rank {award.rank}). Award #{award.pk}."


def drop_opening_body(lottery: Lottery) -> str:
    closes = lottery.closes_at.strftime("%Y-%m-%d %H:%M UTC")
    return f"{lottery.title} is open: {lottery.prize}. Enter before {closes}. Reply STOP to opt out."


def not_selected_body(lottery: Lottery) -> str:
    return f"{lottery.title}: you were not selected this time. Thank you for taking part."
