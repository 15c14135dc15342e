"""Indexes on the source tables' time columns, for the recomputation's range scans (analytics.measures).

They serve this floor's reads, so they are made here rather than in the
owning apps' models. Built concurrently: a plain CREATE INDEX would block the
ballots' and stakes' inserts while it scans. BRIN where rows arrive in time
order (a few pages of summary per million rows, nearly free to keep up on
insert); a partial B-tree where the column is set later, on a few rows.
"""

from django.db import migrations

INDEXES = {
    "business_ballot_created_brin": "entries_ballot USING brin (created_at) WITH (autosummarize = on)",
    "business_stake_created_brin": "entries_stake USING brin (created_at) WITH (autosummarize = on)",
    "business_award_created_brin": "draws_lotteryaward USING brin (created_at) WITH (autosummarize = on)",
    "business_award_claimed": "draws_lotteryaward (claimed_at) WHERE claimed_at IS NOT NULL",
    "business_award_forfeited": "draws_lotteryaward (forfeited_at) WHERE forfeited_at IS NOT NULL",
    "business_draw_drawn_brin": "draws_draw USING brin (drawn_at) WITH (autosummarize = on)",
    "business_transition_cancelled": "lotteries_lotterytransition (created_at) WHERE to_state = 'cancelled'",
    "business_sms_sent": "notifications_notification (sent_at) WHERE state = 'sent'",
    "business_sms_failed": "notifications_notification (updated_at) WHERE state = 'failed'",
    "business_dead_letter_created": "outbox_deadletter (created_at)",
}


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("analytics", "0001_initial"),
        ("entries", "0010_operations_create_drops"),
        ("pools", "0001_initial"),
        ("draws", "0006_award_claims"),
        ("lotteries", "0005_drops"),
        ("notifications", "0004_broadcast_roles"),
        ("outbox", "0008_consumer_hour_counter"),
        ("core", "0002_hourly_tally"),
    ]

    operations = [
        migrations.RunSQL(
            f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ON {target}",
            f"DROP INDEX CONCURRENTLY IF EXISTS {name}",
        )
        for name, target in INDEXES.items()
    ]
