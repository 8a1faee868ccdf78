"""Table definitions used by the SQL store's queries (migrations create them; see migrations/)."""

from __future__ import annotations

import sqlalchemy as sa

meta = sa.MetaData()

sessions = sa.Table(
    "sessions",
    meta,
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
    sa.Column("ttl", sa.Float, nullable=True),
    sa.Column("composed_into", sa.String(1400), nullable=False, server_default=""),
    sa.Column("commit_on_complete", sa.Integer, nullable=False, server_default="0"),
)

session_ranges = sa.Table(
    "session_ranges",
    meta,
    sa.Column("session_id", sa.String(128), primary_key=True),
    sa.Column("start", sa.BigInteger, primary_key=True),
    sa.Column("stop", sa.BigInteger, nullable=False),
)

pieces = sa.Table(
    "pieces",
    meta,
    sa.Column("session_id", sa.String(128), primary_key=True),
    sa.Column("start", sa.BigInteger, primary_key=True),
    sa.Column("stop", sa.BigInteger, nullable=False),
    sa.Column("ref", sa.String(300), nullable=False),
    sa.Column("handle", sa.String(1100), nullable=False, server_default=""),
    sa.Column("tag", sa.String(300), nullable=False, server_default=""),
)

claims = sa.Table(
    "claims",
    meta,
    sa.Column("session_id", sa.String(128), primary_key=True),
    sa.Column("start", sa.BigInteger, primary_key=True),
    sa.Column("stop", sa.BigInteger, nullable=False),
    sa.Column("token", sa.String(64), nullable=False),
    sa.Column("lease_until", sa.Float, nullable=False),
)

resources = sa.Table(
    "resources",
    meta,
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

# the event outbox (chunkd.core.outbox): ``dedup`` is unique -- "<kind>:<session id>:<created_at>" for the
# kinds that happen once per session, the event id otherwise; ``session`` is the session row as JSON
events = sa.Table(
    "events",
    meta,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("dedup", sa.String(400), nullable=False, unique=True),
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
)
