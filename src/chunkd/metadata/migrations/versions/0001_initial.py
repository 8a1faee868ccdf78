"""Sessions, received ranges, write claims and protocol resources.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None


def upgrade() -> None:
    op.create_table(
        "sessions",
        sa.Column("id", sa.String(128), primary_key=True),
        sa.Column("family", sa.String(32), nullable=False),
        sa.Column("owner", sa.String(300), nullable=False),
        sa.Column("tenant", sa.String(100), nullable=False, server_default=""),
        sa.Column("namespace", sa.String(300), nullable=False),
        sa.Column("key", sa.String(1100), nullable=False),
        sa.Column("length", sa.BigInteger, nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("modified_at", sa.Float, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
        sa.Column("content_type", sa.String(300), nullable=False, server_default=""),
        sa.Column("name", sa.String(1100), nullable=False, server_default=""),
        sa.Column("metadata", sa.Text, nullable=False, server_default="{}"),
        sa.Column("received", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("version", sa.Integer, nullable=False, server_default="0"),
        sa.Column("storage_ref", sa.String(300), nullable=False, server_default=""),
        sa.Column("extra", sa.Text, nullable=False, server_default="{}"),
    )
    op.create_index("ix_sessions_target", "sessions", ["namespace", "key"])
    op.create_index("ix_sessions_expiry", "sessions", ["state", "expires_at"])
    op.create_index("ix_sessions_owner", "sessions", ["owner", "id"])
    op.create_table(
        "session_ranges",
        sa.Column("session_id", sa.String(128), primary_key=True),
        sa.Column("start", sa.BigInteger, primary_key=True),
        sa.Column("stop", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "claims",
        sa.Column("session_id", sa.String(128), primary_key=True),
        sa.Column("start", sa.BigInteger, primary_key=True),
        sa.Column("stop", sa.BigInteger, nullable=False),
        sa.Column("token", sa.String(64), nullable=False),
        sa.Column("lease_until", sa.Float, nullable=False),
    )
    op.create_table(
        "resources",
        sa.Column("kind", sa.String(64), primary_key=True),
        sa.Column("id", sa.String(128), primary_key=True),
        sa.Column("tenant", sa.String(100), nullable=False),
        sa.Column("owner", sa.String(300), nullable=False),
        sa.Column("parent", sa.String(300), nullable=False),
        sa.Column("data", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("modified_at", sa.Float, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
    )
    op.create_index("ix_resources_parent", "resources", ["kind", "parent"])
    op.create_index("ix_resources_tenant", "resources", ["kind", "tenant"])
