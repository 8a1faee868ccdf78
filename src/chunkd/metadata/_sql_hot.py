"""The statements of the per-chunk path and of the common reads, prepared once per dialect
(:mod:`chunkd.metadata._prepared` says why)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from chunkd.metadata._prepared import Prepared
from chunkd.metadata._sql_rows import DEAD
from chunkd.metadata.schema import claims, events, pieces, resources, session_ranges, sessions


class Hot:
    def __init__(self, dialect: sa.engine.Dialect) -> None:
        def p(stmt: Any) -> Prepared:
            return Prepared(stmt, dialect)

        b = sa.bindparam
        r, c, pc, s = session_ranges.c, claims.c, pieces.c, sessions.c
        self.get = p(sa.select(*sessions.c).where(s.id == b("sid")))
        self.lock = p(sa.select(s.id).where(s.id == b("sid")).with_for_update())
        # the row and its lock in one round trip (PostgreSQL; SQLite renders no FOR UPDATE: BEGIN IMMEDIATE
        # already holds the database's write lock)
        self.get_locked = p(sa.select(*sessions.c).where(s.id == b("sid")).with_for_update())
        self.state = p(sa.select(s.state).where(s.id == b("sid")))
        self.add_session = p(sessions.insert())
        self.bump = p(sessions.update().where(s.id == b("sid")).values(
            received=b("new_received"), version=b("new_version"), modified_at=b("new_modified"),
            expires_at=b("new_expires"), length=b("new_length"), state=b("new_state")))
        # -- ranges
        self.ranges = p(sa.select(r.start, r.stop).where(r.session_id == b("sid")).order_by(r.start))
        self.first_ranges = p(sa.select(r.start, r.stop).where(r.session_id == b("sid")).order_by(r.start)
                              .limit(b("lim")))
        self.prefix = p(sa.select(r.stop).where(r.session_id == b("sid"), r.start == 0))
        self.last_range = p(sa.select(sa.func.max(r.stop)).where(r.session_id == b("sid")))
        self.range_before = p(sa.select(r.start, r.stop).where(r.session_id == b("sid"), r.start <= b("start"))
                              .order_by(r.start.desc()).limit(1))
        self.ranges_touching = p(sa.select(r.start, r.stop).where(r.session_id == b("sid"), r.start > b("start"),
                                                                   r.start <= b("end")).order_by(r.start))
        self.drop_ranges = p(session_ranges.delete().where(r.session_id == b("sid"), r.start >= b("lo"),
                                                           r.start <= b("hi")))
        self.add_range = p(session_ranges.insert())
        self.extend_range = p(session_ranges.update().where(r.session_id == b("sid"), r.start == b("lo"))
                              .values(stop=b("new_stop")))
        # -- pieces
        self.add_piece = p(pieces.insert())
        self.last_piece = p(sa.select(sa.func.max(pc.start) + 1).where(pc.session_id == b("sid")))
        self.pieces = p(sa.select(pc.start, pc.stop, pc.ref, pc.handle, pc.tag).where(pc.session_id == b("sid"))
                        .order_by(pc.start))
        # -- claims
        self.claims_within = p(sa.select(c.start, c.stop, c.token).where(
            c.session_id == b("sid"), c.start < b("end"), c.stop > b("start")))
        self.last_claim = p(sa.select(sa.func.max(c.stop)).where(c.session_id == b("sid")))
        self.drop_expired = p(claims.delete().where(c.session_id == b("sid"), c.lease_until < b("before")))
        self.add_claim = p(claims.insert())
        self.renew = p(claims.update().where(c.session_id == b("sid"), c.token == b("tok"))
                       .values(lease_until=b("until")))
        self.drop_token = p(claims.delete().where(c.session_id == b("sid"), c.token == b("tok")))
        # -- purging
        self.drop_all_ranges = p(session_ranges.delete().where(r.session_id == b("sid")))
        self.drop_all_pieces = p(pieces.delete().where(pc.session_id == b("sid")))
        self.drop_all_claims = p(claims.delete().where(c.session_id == b("sid")))
        self.drop_session = p(sessions.delete().where(s.id == b("sid")))
        # lock the rows (PostgreSQL) so that a concurrent create() that replaces one of these dead sessions
        # with a live one waits, and then finds no row, instead of losing its new session; an IN over the
        # dead states (not NOT IN over the live ones) lets ix_sessions_dead serve it
        # (rendering the IN list needs a value for every parameter at compile time: 0.0 stands in for "before")
        dead = (sa.select(*sessions.c).where(s.state.in_(DEAD), s.modified_at < b("before", value=0.0))
                .limit(b("lim", value=1000)))
        self.dead = p(dead if dialect.name == "sqlite" else dead.with_for_update(skip_locked=True))
        # -- resources
        q = resources.c
        self.get_resource = p(sa.select(*resources.c).where(q.kind == b("rkind"), q.id == b("rid")))
        self.resource_exists = p(sa.select(q.id).where(q.kind == b("rkind"), q.id == b("rid")))
        guard = sa.select(q.data).where(q.kind == b("rkind"), q.id == b("rid"))
        self.guard = p(guard if dialect.name == "sqlite" else guard.with_for_update(read=True))
        self.add_resource = p(resources.insert())
        # -- the event outbox: a second row with the same dedup key (a second `committed`) is ignored
        insert = sqlite.insert if dialect.name == "sqlite" else postgresql.insert
        self.add_event = p(insert(events).on_conflict_do_nothing(index_elements=["dedup"]))
