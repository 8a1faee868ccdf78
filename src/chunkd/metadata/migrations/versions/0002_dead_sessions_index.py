"""Index dead sessions by state and age, so the expiry sweep's purge does not scan every session.

With a million sessions the purge scanned the whole table (~0.6 s) while holding SQLite's write lock,
stalling every writer once per sweep interval (bench/README.md, profile findings).

Revision ID: 0002
Revises: 0001
"""

from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    op.create_index("ix_sessions_dead", "sessions", ["state", "modified_at"])
