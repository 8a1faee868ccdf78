"""The write transactions of the SQL store: claim, renew, record, release (the per-chunk path)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from chunkd.core.errors import GuardFailed, SessionGone, SessionNotFound, WriteInterrupted
from chunkd.core.models import Piece, Session, SessionState
from chunkd.core.outbox import NewEvent
from chunkd.core.ranges import Range, RangeSet, gaps_of_sorted
from chunkd.core.store import Claim, Claimed, ClaimMode, Guard, Recorded, WriteIntent
from chunkd.metadata._prepared import Out, Prepared, Txn
from chunkd.metadata._sql_outbox import SqlOutbox
from chunkd.metadata._sql_rows import LIVE, SESSION_COLUMNS, session_from_tuple, session_values

Call = tuple[Prepared, Mapping[str, Any]]


class SqlWrites(SqlOutbox):
    async def claim(self, intent: WriteIntent, now: float, lease: float) -> Claimed:
        return await self._run(lambda: self._claim_retried(intent, now, lease))

    def claim_blocking(self, intent: WriteIntent, now: float, lease: float) -> Claimed:
        """:meth:`claim` in the calling (worker) thread (:class:`chunkd.core.store.BlockingWrites`)."""
        return self._blocking(lambda: self._claim_retried(intent, now, lease))

    def _claim_retried(self, intent: WriteIntent, now: float, lease: float) -> Claimed:
        try:
            return self._claim_once(intent, now, lease)
        except self._integrity_errors:
            # PostgreSQL: FOR UPDATE cannot lock a row that does not exist yet, so two creators of one id
            # both insert and the primary key refuses the second: claim again, now the session exists
            if intent.create is None:
                raise
            return self._claim_once(intent, now, lease)

    def _claim_once(self, intent: WriteIntent, now: float, lease: float) -> Claimed:
        with self._fast_write(soft=True) as t:
            return self._claim_in(t, intent, now, lease)[0]

    def _claim_in(self, t: Txn, intent: WriteIntent, now: float, lease: float, *,
                  rows: bool = True) -> tuple[Claimed, tuple[Out, Out] | None]:
        """The claim's reads and decisions inside ``t``. With ``rows`` False no claim rows are written: the
        caller keeps the session's row lock until it has recorded the bytes (``_pg_held``). Also returns
        the stored ranges read around ``[intent.start, intent.end)`` (``_overlapping_calls``, touching)
        when they were read before any write of ``t``, else None."""
        h = self._hot
        sid, start, end = intent.session_id, intent.start, intent.end
        # everything the claim reads, in one batch (one round trip on PostgreSQL): the session's row and its
        # lock first, then -- each in a statement of its own, after the lock: on PostgreSQL a subquery of
        # the locking SELECT sees the snapshot from before it waited for the lock, so a writer that waited
        # would read the prefix as it was before the writer it waited for (tests/core/test_append.py, two
        # processes) -- the guard, the prefix and, when the range is known already, what _claim reads
        known = intent.mode is not ClaimMode.ALLOCATE
        calls = [(h.get_locked, {"sid": sid}), *self._guard_calls(intent.guard), (h.prefix, {"sid": sid}),
                 *(self._claim_calls(sid, start, end, now) if known else ())]
        outs = t.batch(calls)
        g = 0 if intent.guard is None else 1
        row, found = _first(outs[0]), _first(outs[1 + g])
        guard_state = self._guard_from(intent.guard, outs[1]) if intent.guard is not None else None
        reads: list[Out] | None = outs[2 + g:] if known else None
        created = False
        if (row is None or row[_STATE] not in LIVE) and intent.create is not None:
            if row is not None:
                self._purge(t, sid)  # a dead one: replace it (what was read above was the dead one's)
                found, reads = None, None
            t.later(h.add_session, **session_values(intent.create))
            session, created = intent.create, True
        elif row is None:
            raise SessionNotFound()
        else:
            session = session_from_tuple(row)
        around = (reads[1], reads[2]) if reads else None
        prefix = int(found[0]) if found else 0  # ranges are merged: the one at 0 is the prefix
        guard_failed = intent.guard is not None and guard_state != intent.guard.value
        if session.state is not SessionState.OPEN or guard_failed or \
                (intent.mode is ClaimMode.APPEND and intent.start != prefix):
            return Claimed(session, prefix, None, created, guard_state), around
        early = 0
        if not known:
            early = t.run(h.drop_expired, sid=sid, before=now)
            # after every received byte, every claim and every piece (an empty one has no bytes)
            tops = [t.one(stmt, sid=sid) for stmt in (h.last_range, h.last_claim, h.last_piece)]
            start = max([0, *(int(x[0]) for x in tops if x and x[0] is not None)])
            end = start + (intent.end - intent.start)
        claim = self._claim(t, sid, intent.token, start, end, now, now + lease,
                            all_or_nothing=intent.mode is ClaimMode.APPEND, reads=reads, rows=rows)
        if early:
            claim = Claim(claim.to_write, claim.busy, claim.taken_over + early)
        return Claimed(session, prefix, claim, created, guard_state), around

    def _guard_calls(self, guard: Guard | None) -> list[Call]:
        return [] if guard is None else [(self._hot.guard, {"rkind": guard.kind, "rid": guard.id})]

    @staticmethod
    def _guard_from(guard: Guard, out: Out) -> str:
        row = _first(out)
        if row is None:
            return ""
        return str(json.loads(row[0]).get(guard.field, ""))

    def _overlapping_calls(self, session_id: str, start: int, end: int) -> list[Call]:
        """The reads of the stored ranges touching [start, end): the last one starting at or before
        ``start``, and those starting in ``(start, end]`` (a claim drops one starting at ``end``)."""
        h = self._hot
        return [(h.range_before, {"sid": session_id, "start": start}),
                (h.ranges_touching, {"sid": session_id, "start": start, "end": end})]

    @staticmethod
    def _overlapping_from(before: Out, rest: Out, start: int, touching: bool) -> list[Range]:
        """What the reads of ``_overlapping_calls`` found, unclipped."""
        out: list[Range] = []
        prev = _first(before)
        if prev is not None and (prev[1] >= start if touching else prev[1] > start):
            out.append((prev[0], prev[1]))
        out.extend((a, b) for a, b in rest[0])
        return out

    def _claim_calls(self, session_id: str, start: int, end: int, drop_before: float) -> list[Call]:
        """What ``_claim`` reads (four statements): expired claims dropped, the ranges around (touching, so
        that a record in the same transaction can merge with what was read), the claims."""
        h = self._hot
        return [(h.drop_expired, {"sid": session_id, "before": drop_before}),
                *self._overlapping_calls(session_id, start, end),
                (h.claims_within, {"sid": session_id, "start": start, "end": end})]

    def _claim(self, t: Txn, session_id: str, token: str, start: int, end: int, drop_before: float,
               lease_until: float, all_or_nothing: bool = False, reads: list[Out] | None = None,
               rows: bool = True) -> Claim:
        """Claim the gaps of [start, end) no live claim of another token holds (with ``all_or_nothing``,
        nothing when any is held), after dropping the session's claims whose lease ended before
        ``drop_before``. Ranges the token already holds are returned again, not inserted twice. ``reads``:
        what ``_claim_calls`` read in this transaction already, before any write of it. ``rows`` False: the
        claim is computed, not written (see ``_claim_in``)."""
        h = self._hot
        dropped_out, before, touching, claims_out = reads or t.batch(
            self._claim_calls(session_id, start, end, drop_before))
        dropped = dropped_out[1]
        near = touching[0]  # ordered by start; one starting at ``end`` touches but does not overlap
        within: Out = touching if not near or near[-1][0] < end else ([r for r in near if r[0] < end], 0)
        gaps = _gaps_within(self._overlapping_from(before, within, start, touching=False), start, end)
        if not gaps:
            return Claim([], [], dropped)
        claimed = claims_out[0]
        if not claimed:  # the common case (nobody else writes here): every gap is claimed as it is
            if not rows:
                return Claim(gaps, [], dropped)
            t.many(h.add_claim, [{"session_id": session_id, "start": s, "stop": e, "token": token,
                                  "lease_until": lease_until} for s, e in gaps])
            return Claim(gaps, [], dropped)
        held, mine = RangeSet(), RangeSet()
        for s, e, tok in claimed:
            (mine if tok == token else held).add(s, e)
        to_write: list[Range] = []
        fresh: list[Range] = []
        busy: list[Range] = []
        for gs, ge in gaps:
            busy.extend(held.overlapping(gs, ge))
            for fs, fe in held.gaps(gs, ge):
                to_write.append((fs, fe))
                fresh.extend(mine.gaps(fs, fe))
        if busy and all_or_nothing:
            return Claim([], busy, dropped)
        if fresh and rows:
            t.many(h.add_claim, [{"session_id": session_id, "start": s, "stop": e, "token": token,
                                  "lease_until": lease_until} for s, e in fresh])
        return Claim(to_write, busy, dropped)

    async def renew(self, session_id: str, token: str, now: float, lease: float) -> bool:
        return await self._run(lambda: self._renew(session_id, token, now, lease))

    def renew_blocking(self, session_id: str, token: str, now: float, lease: float) -> bool:
        return self._blocking(lambda: self._renew(session_id, token, now, lease))

    def _renew(self, session_id: str, token: str, now: float, lease: float) -> bool:
        with self._fast_write(session_id, soft=True) as t:
            return bool(t.run(self._hot.renew, sid=session_id, tok=token, until=now + lease))

    async def record(self, session_id: str, token: str, pieces: Sequence[Piece], now: float, expires_at: float,
                     *, length: int | None = None, missing_limit: int | None = None,
                     guard: Guard | None = None, on_complete: Sequence[NewEvent] = ()) -> Recorded:
        return await self._run(lambda: self._record(session_id, token, pieces, now, expires_at, length,
                                                    missing_limit, guard, on_complete))

    def record_blocking(self, session_id: str, token: str, pieces: Sequence[Piece], now: float, expires_at: float,
                        *, length: int | None = None, missing_limit: int | None = None,
                        guard: Guard | None = None, on_complete: Sequence[NewEvent] = ()) -> Recorded:
        return self._blocking(lambda: self._record(session_id, token, pieces, now, expires_at, length,
                                                   missing_limit, guard, on_complete))

    def _record(self, session_id: str, token: str, pieces: Sequence[Piece], now: float, expires_at: float,
                length: int | None, missing_limit: int | None, guard: Guard | None,
                on_complete: Sequence[NewEvent]) -> Recorded:
        h = self._hot
        first = next((p for p in pieces if p.end > p.start), None)
        # the reads in one batch: the row (locked already when the batch has other members), the guard,
        # dropping the token's claims (which tells whether it still held them), the ranges the first piece
        # merges with; a refusal below rolls the drop back with everything else
        calls = [(h.get_locked, {"sid": session_id}), *self._guard_calls(guard),
                 (h.drop_token, {"sid": session_id, "tok": token}),
                 *(self._overlapping_calls(session_id, first.start, first.end) if first else ())]

        def work(t: Txn) -> Recorded:
            outs = t.batch(calls)
            row = _first(outs[0])
            if row is None:
                raise SessionNotFound()
            before = session_from_tuple(row)
            if pieces and before.state.value not in LIVE:
                raise SessionGone("the upload session was deleted or expired while it was written")
            g = 0 if guard is None else 1
            if guard is not None:
                state = self._guard_from(guard, outs[1])
                if state != guard.value:
                    raise GuardFailed("the resource this write depends on changed", state=state or "")
            if pieces and not outs[1 + g][1]:
                raise WriteInterrupted("another request took over this range")
            around = (outs[2 + g], outs[3 + g]) if first else None
            return self._apply(t, before, pieces, now, expires_at, length, missing_limit, on_complete, around)

        # concurrent records share one transaction and one durable commit (group commit, _group_commit.py)
        result: Recorded = self._group.run(work, session_id)
        return result

    def _apply(self, t: Txn, before: Session, pieces: Sequence[Piece], now: float, expires_at: float,
               length: int | None, missing_limit: int | None, on_complete: Sequence[NewEvent],
               around: tuple[Out, Out] | None) -> Recorded:
        """Record ``pieces`` of the session ``before`` (its row locked by ``t``): merged ranges, piece rows,
        the bumped session, the completion's events. ``around``: the stored ranges touching the first
        non-empty piece, read in ``t`` before any write of it."""
        h, session_id = self._hot, before.id
        first = next((p for p in pieces if p.end > p.start), None)
        added = 0
        for p in pieces:
            if p.end > p.start:
                found = self._overlapping_from(*around, p.start, touching=True) if p is first and around else None
                added += self._merge(t, session_id, p.start, p.end, found)
            if p.end > p.start or p.tag:  # an empty piece counts only as a label (an empty block)
                t.later(h.add_piece, session_id=session_id, start=p.start, stop=p.end, ref=p.ref,
                        handle=p.handle, tag=p.tag)
        after = self._bumped(before, added, now, expires_at, length)
        t.later(h.bump, sid=session_id, new_received=after.received, new_version=after.version,
                new_modified=now, new_expires=expires_at, new_length=after.length, new_state=after.state.value)
        if on_complete and added and after.complete:  # these bytes completed it: once, with them
            self._write_events(t, on_complete, {session_id: after})
        missing = None
        if missing_limit is not None and after.length is not None:
            rows = t.all(h.first_ranges, sid=session_id, lim=missing_limit + 1)
            missing = gaps_of_sorted(((a, b) for a, b in rows), after.length, missing_limit)
        return Recorded(after, missing)

    @staticmethod
    def _bumped(before: Session, added: int, now: float, expires_at: float, length: int | None) -> Session:
        # the session row is locked for this transaction, so the new values follow from the old
        after = before.evolve(received=before.received + added, version=before.version + 1, modified_at=now,
                              expires_at=expires_at,
                              length=length if length is not None and before.length is None else before.length)
        if after.commit_on_complete and after.complete and added and after.state is SessionState.OPEN:
            after = after.evolve(state=SessionState.COMMITTING)  # publish it, also after a crash from here
        return after

    def _merge(self, t: Txn, session_id: str, start: int, end: int, found: list[Range] | None = None) -> int:
        """Merge [start, end) into the stored ranges; return how many bytes were new. ``found``: the stored
        ranges touching it, read in this transaction already (``_overlapping_calls``)."""
        if found is None:
            before, rest = t.batch(self._overlapping_calls(session_id, start, end))
            found = self._overlapping_from(before, rest, start, touching=True)
        new_start, new_end = start, end
        already = 0
        for s, e in found:
            already += max(0, min(e, end) - max(s, start))
            new_start, new_end = min(new_start, s), max(new_end, e)
        if len(found) == 1 and found[0][0] == new_start:  # the common append: the range before grows
            t.later(self._hot.extend_range, sid=session_id, lo=new_start, new_stop=new_end)
            return (end - start) - already
        if found:  # they are consecutive: no other stored range starts between the first and the last
            t.later(self._hot.drop_ranges, sid=session_id, lo=found[0][0], hi=found[-1][0])
        t.later(self._hot.add_range, session_id=session_id, start=new_start, stop=new_end)
        return (end - start) - already

    async def release(self, session_id: str, token: str) -> None:
        await self._run(lambda: self._release(session_id, token))

    def release_blocking(self, session_id: str, token: str) -> None:
        self._blocking(lambda: self._release(session_id, token))

    def _release(self, session_id: str, token: str) -> None:
        with self._fast_write(session_id, soft=True) as t:
            t.later(self._hot.drop_token, sid=session_id, tok=token)

    def _purge(self, t: Txn, session_id: str) -> None:
        for stmt in (self._hot.drop_all_ranges, self._hot.drop_all_pieces, self._hot.drop_all_claims,
                     self._hot.drop_session):
            t.later(stmt, sid=session_id)


def _first(out: Out) -> tuple[Any, ...] | None:
    return out[0][0] if out[0] else None


def _gaps_within(ranges: list[Range], start: int, end: int) -> list[Range]:
    """The parts of [start, end) that sorted, disjoint ``ranges`` do not cover (``RangeSet.gaps`` without
    building a RangeSet: this runs on every chunk)."""
    out: list[Range] = []
    pos = start
    for s, e in ranges:
        if s > pos:
            out.append((pos, min(s, end)))
        pos = max(pos, e)
        if pos >= end:
            return out
    if pos < end:
        out.append((pos, end))
    return out


_STATE = SESSION_COLUMNS.index("state")
