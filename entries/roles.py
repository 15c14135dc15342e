"""The staff roles the platform ships, as Django groups (created by a migration).

A staff member gets a role by joining its group (in admin, by a superuser).
Every action checks one permission, so a role is nothing more than the list
of permissions below; ``tests/test_staff_permissions.py`` checks that the
database's groups match it, so a change here needs a migration beside it.

- **support** answers players: sees players, ballots, stakes, lotteries and
  draws, bans and unbans, records a player's SMS opt-in or opt-out given to
  staff, and lifts a login lock-out (deletes its access attempt).
- **operations** runs the platform: creates drops, closes lotteries (and
  forces an early close), replays parked outbox events and dead letters,
  produces test stakes, sets the pool games' terms, sends failed SMS again,
  and sets the live settings (``core.live``: the SMS gateway's). It reads the
  business metrics and the operations page (``analytics``), and runs the load
  generator: sets its chaos switches (``core.change_chaos_switch``), provisions
  its players, triggers drops, records and reads its ground truth.
- **compliance** audits: sees everything staff can see (the load generator's
  ground truth too), changes nothing.

Nobody but a superuser sees API tokens or the lotteries' secret seeds, or
makes staff (``is_staff``, ``is_superuser``, groups and permissions).
"""

SUPPORT = "support"
OPERATIONS = "operations"
COMPLIANCE = "compliance"

_PLAYER_VIEWS = [
    "entries.view_player",
    "entries.view_ballot",
    "entries.view_playerbanevent",
    "entries.view_smsconsentevent",
    "pools.view_stake",
]
_LOTTERY_VIEWS = ["lotteries.view_lottery", "lotteries.view_lotterytransition", "pools.view_poolgame"]
_DRAW_VIEWS = ["draws.view_draw", "draws.view_lotteryaward"]
_OUTBOX_VIEWS = [
    "outbox.view_outboxevent",
    "outbox.view_inboxmessage",
    "outbox.view_deadletter",
    "outbox.view_consumercounter",
]
_SMS_VIEWS = ["notifications.view_notification", "notifications.view_broadcast", "notifications.view_gatewaymessage"]
_LIVE_SETTINGS = ["core.view_livesetting", "core.add_livesetting", "core.change_livesetting", "core.delete_livesetting"]
_SCHEDULE_VIEWS = [
    "django_celery_beat.view_periodictask",
    "django_celery_beat.view_crontabschedule",
    "django_celery_beat.view_intervalschedule",
    "django_celery_beat.view_solarschedule",
    "django_celery_beat.view_clockedschedule",
]

_LOGIN_VIEWS = ["axes.view_accessattempt", "axes.view_accesslog", "axes.view_accessfailurelog"]
# The load generator (loadgen): its chaos switches, players, trigger and ground truth.
_LOADGEN = [
    "core.change_chaos_switch",
    "loadgen.view_injectedanomaly",
    "loadgen.record_anomaly",
    "loadgen.provision_players",
    "loadgen.trigger_drop",
]

ROLES: dict[str, list[str]] = {
    SUPPORT: [
        *_PLAYER_VIEWS,
        *_LOTTERY_VIEWS,
        *_DRAW_VIEWS,
        "notifications.view_notification",
        "notifications.view_broadcast",
        "entries.ban_player",
        "entries.unban_player",
        "entries.change_sms_consent",
        "axes.view_accessattempt",
        "axes.delete_accessattempt",
    ],
    OPERATIONS: [
        *_LOTTERY_VIEWS,
        *_DRAW_VIEWS,
        *_OUTBOX_VIEWS,
        *_SMS_VIEWS,
        "django_celery_beat.view_periodictask",
        "pools.view_stake",
        "lotteries.close_lottery",
        "lotteries.force_close_lottery",
        "lotteries.create_drop",
        "pools.add_poolgame",
        "pools.change_poolgame",
        "outbox.replay_outbox_event",
        "outbox.replay_dead_letter",
        "pools.produce_stake",
        "notifications.resend_notification",
        *_LIVE_SETTINGS,
        "analytics.view_business_metrics",
        *_LOADGEN,
    ],
    COMPLIANCE: [
        *_PLAYER_VIEWS,
        *_LOTTERY_VIEWS,
        *_DRAW_VIEWS,
        *_OUTBOX_VIEWS,
        *_SMS_VIEWS,
        "core.view_livesetting",
        "loadgen.view_injectedanomaly",
        *_SCHEDULE_VIEWS,
        *_LOGIN_VIEWS,
        "auth.view_group",
        "auth.view_permission",
        "analytics.view_business_metrics",
    ],
}
