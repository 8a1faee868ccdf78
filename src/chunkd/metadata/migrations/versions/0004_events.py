"""The event outbox: lifecycle events wait in the database until any live node delivers them.

* ``events``: one row per event (``chunkd.core.outbox``), written in the transaction of the state change
  that causes it; ``dedup`` is unique, which makes ``completed`` / ``committed`` happen once per session.
  A deliverer leases rows (``claimed_by``, ``lease_until`` on the database's clock) and marks them done.
* ``ix_events_due``: undelivered rows by their next attempt, which is what every node polls.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("dedup", sa.String(400), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("session_id", sa.String(128), nullable=False),
        sa.Column("session", sa.Text, nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_attempt", sa.Float, nullable=False, server_default="0"),
        sa.Column("claimed_by", sa.String(64), nullable=False, server_default=""),
        sa.Column("lease_until", sa.Float, nullable=False, server_default="0"),
        sa.Column("done_at", sa.Float, nullable=True),
        sa.Column("outcome", sa.String(16), nullable=False, server_default=""),
        sa.UniqueConstraint("dedup", name="uq_events_dedup"),
    )
    op.create_index("ix_events_due", "events", ["done_at", "next_attempt"])
