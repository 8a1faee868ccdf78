"""Pieces, and core session state in typed columns.

* ``pieces``: the byte store's handle of every recorded run of a session's bytes, written in the same
  transaction as the received range (issue: "bytes as immutable pieces"). Existing sessions get one
  piece per received range in their staged file (what local storage held).
* ``sessions.ttl`` and ``sessions.composed_into`` replace the ``ttl`` and ``composed_into`` keys of
  ``extra``; ``sessions.commit_on_complete`` marks sessions published as soon as they are complete
  (tus uploads other than partial and final ones, Graph print documents).
* an index on ``sessions.storage_ref`` lets garbage collection ask whether a staging area is live.

Uncommitted Azure blocks staged before this revision are not carried over (blocks are staged into one
session per blob since): their Put Block List must be sent again after the upgrade.

Revision ID: 0003
Revises: 0002
"""

import json

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    op.create_table(
        "pieces",
        sa.Column("session_id", sa.String(128), primary_key=True),
        sa.Column("start", sa.BigInteger, primary_key=True),
        sa.Column("stop", sa.BigInteger, nullable=False),
        sa.Column("ref", sa.String(300), nullable=False),
        sa.Column("handle", sa.String(1100), nullable=False, server_default=""),
        sa.Column("tag", sa.String(300), nullable=False, server_default=""),
    )
    with op.batch_alter_table("sessions") as batch:
        batch.add_column(sa.Column("ttl", sa.Float, nullable=True))
        batch.add_column(sa.Column("composed_into", sa.String(1400), nullable=False, server_default=""))
        batch.add_column(sa.Column("commit_on_complete", sa.Integer, nullable=False, server_default="0"))
    op.create_index("ix_sessions_storage_ref", "sessions", ["storage_ref"])
    conn = op.get_bind()
    conn.execute(sa.text(
        "INSERT INTO pieces (session_id, start, stop, ref, handle, tag) "
        "SELECT r.session_id, r.start, r.stop, s.storage_ref, '', '' FROM session_ranges r "
        "JOIN sessions s ON s.id = r.session_id"))
    rows = conn.execute(sa.text("SELECT id, family, extra FROM sessions WHERE state IN ('open', 'committing')"))
    for sid, family, raw in list(rows):
        extra = json.loads(raw or "{}")
        ttl = extra.pop("ttl", None)
        into = extra.pop("composed_into", None)
        composed = "/".join(into) if isinstance(into, list) else str(into or "")
        auto = (family == "tus" and extra.get("concat") not in ("partial", "final")) or family == "graph-print"
        conn.execute(sa.text("UPDATE sessions SET ttl = :ttl, composed_into = :c, commit_on_complete = :a, "
                             "extra = :e WHERE id = :id"),
                     {"ttl": ttl, "c": composed, "a": int(auto), "e": json.dumps(extra), "id": sid})
