"""The SessionStore conformance suite: every metadata store runs these tests unchanged.

Implementations: SQLite (a fresh file per test) and PostgreSQL (one uniquely named database per test
session on 127.0.0.1:5432, user ``postgres``, trust auth, dropped at the end; tables are emptied between
tests). When PostgreSQL is unreachable its tests fail under CI (``CI=true``) and are skipped elsewhere.

What a store must guarantee (see :mod:`chunkd.core.store`):

* ``create`` inserts; a *dead* session with the same id is replaced (ranges, pieces and claims forgotten),
  a live one raises SessionConflict. A claim with ``create`` does the same in its own transaction.
* ``claim`` hands out only the gaps of a range that no live claim of another token holds, reports ranges
  other live claims hold as ``busy``, and first drops expired claims so the next writer takes over; the
  old holder's ``renew`` then returns False and its ``record`` raises WriteInterrupted. In APPEND mode it
  claims only when the offset is the contiguous prefix and the session is open, all or nothing; in
  ALLOCATE mode it claims fresh bytes after everything received, claimed or recorded. A guard is read in
  the same transaction.
* ``record`` stores the pieces with their handles and tags, merges adjacent and overlapping ranges,
  counts exactly the new bytes in ``received``, drops the writer's claims, bumps ``version``, makes a
  completed ``commit_on_complete`` session COMMITTING, and returns the first missing ranges when asked.
* the event outbox: events written with ``record`` (only when it completes the session), ``update`` and
  ``update_many`` commit or vanish with the change; ``completed`` / ``committed`` are kept once per
  session; a claimed event is leased to one claimer, concurrent claimers never share one, an event whose
  lease ended is claimed again, and only the lease holder marks it delivered or failed.
* ``update`` is a compare-and-set on ``version``; ``expired`` lists live sessions past their expiry;
  ``purge_dead`` forgets dead sessions and returns them; resources are documents with compare-and-set
  updates and keyset-paginated, filtered listings.
"""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from chunkd.core.engine import Metadata
from chunkd.core.errors import (
    AlreadyExists,
    Conflict,
    GuardFailed,
    NotFound,
    SessionConflict,
    SessionGone,
    SessionNotFound,
    WriteInterrupted,
)
from chunkd.core.models import Piece, Session, SessionState
from chunkd.core.outbox import NewEvent
from chunkd.core.ranges import Range, RangeSet
from chunkd.core.resources import Resource
from chunkd.core.store import Claim, Claimed, ClaimMode, Guard, SessionChanges, SessionQuery, WriteIntent
from chunkd.metadata import open_store

SessionStore = Metadata

PG_ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres connect_timeout=3"


def pg_url(db: str) -> str:
    return f"postgresql://postgres@127.0.0.1:5432/{db}"


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A PostgreSQL database for this test session (name returned), dropped afterwards."""
    try:
        import psycopg

        admin = psycopg.connect(PG_ADMIN, autocommit=True)
    except Exception as exc:  # not installed or not running
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"PostgreSQL at 127.0.0.1:5432 is required in CI: {exc}")
        pytest.skip(f"PostgreSQL at 127.0.0.1:5432 is not reachable: {exc}")
    name = f"chunkd_test_{uuid.uuid4().hex[:12]}"
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield name
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SessionStore]:
    if request.param == "sqlite":
        s = open_store(f"sqlite:///{tmp_path / 'meta.db'}", str(tmp_path))
        await s.migrate()
    else:
        db = request.getfixturevalue("pg_database")
        s = open_store(pg_url(db), str(tmp_path))
        await s.migrate()
        await _truncate(s)
    try:
        yield s
    finally:
        await s.close()


async def _truncate(s: SessionStore) -> None:
    import sqlalchemy as sa

    from chunkd.metadata.sql import SqlSessionStore

    assert isinstance(s, SqlSessionStore)
    with s._writer.begin() as conn:
        conn.execute(sa.text("TRUNCATE sessions, session_ranges, pieces, claims, resources, events"))


def make(session_id: str | None = None, *, length: int | None = 100, expires_at: float = 1000.0,
         owner: str = "user:t:u", family: str = "test", state: SessionState = SessionState.OPEN,
         key: str = "a/b") -> Session:
    return Session(id=session_id or uuid.uuid4().hex, family=family, owner=owner, namespace="ns", key=key,
                   length=length, state=state, created_at=1.0, modified_at=1.0, expires_at=expires_at,
                   tenant="t", content_type="text/plain", name="b", metadata={"k": "v"}, storage_ref="ref-1",
                   ttl=60.0, extra={"nested": {"x": [1, 2]}})


async def claim(store: SessionStore, sid: str, token: str, start: int, end: int, *, now: float,
                lease: float) -> Claim:
    got = (await store.claim(WriteIntent(sid, token, start, end), now, lease)).claim
    assert got is not None
    return got


async def append(store: SessionStore, sid: str, token: str, start: int, end: int, *, now: float,
                 lease: float) -> Claimed:
    return await store.claim(WriteIntent(sid, token, start, end, ClaimMode.APPEND), now, lease)


async def record(store: SessionStore, sid: str, token: str, written: list[Range], *, now: float,
                 expires_at: float, length: int | None = None) -> Session:
    pieces = [Piece("ref-1", a, b, f"h{a}") for a, b in written]
    return (await store.record(sid, token, pieces, now, expires_at, length=length)).session


async def busy(store: SessionStore, sid: str, start: int, end: int, now: float = 0.0) -> bool:
    """Whether another writer's live claim holds part of the range (a probe claim, released at once)."""
    got = (await store.claim(WriteIntent(sid, "probe", start, end), now, 30.0)).claim
    await store.release(sid, "probe")
    return bool(got is not None and got.busy)


# -- sessions -------------------------------------------------------------------------------------
@pytest.mark.anyio
async def test_create_and_get_round_trip(store: SessionStore) -> None:
    s = make()
    await store.create(s)
    got = await store.get(s.id)
    assert got == s
    assert await store.get("nope") is None
    assert await store.ranges(s.id) == RangeSet()
    assert await store.pieces(s.id) == []


@pytest.mark.anyio
async def test_create_conflicts_with_live_and_replaces_dead(store: SessionStore) -> None:
    s = make()
    await store.create(s)
    with pytest.raises(SessionConflict):
        await store.create(make(s.id, key="other"))
    c = await claim(store, s.id, "tok", 0, 10, now=0.0, lease=30.0)
    await record(store, s.id, "tok", c.to_write, now=1.0, expires_at=100.0)
    dead = await store.update(s.id, 1, SessionChanges(state=SessionState.DELETED))
    assert dead.state is SessionState.DELETED
    fresh = make(s.id, key="again", length=5)
    await store.create(fresh)
    got = await store.get(s.id)
    assert got is not None and got.key == "again" and got.received == 0 and got.version == 0
    assert list(await store.ranges(s.id)) == [] and await store.pieces(s.id) == []
    # the old session's claims are gone too: the whole range is claimable
    assert (await claim(store, s.id, "t2", 0, 5, now=0.0, lease=30.0)).to_write == [(0, 5)]


@pytest.mark.anyio
async def test_claim_creates_the_session_in_its_transaction(store: SessionStore) -> None:
    s = make()
    first = await store.claim(WriteIntent(s.id, "A", 0, 10, create=s), 0.0, 30.0)
    assert first.created and first.session == s and first.claim == Claim([(0, 10)], [])
    again = await store.claim(WriteIntent(s.id, "B", 0, 20, create=make(s.id, key="other")), 0.0, 30.0)
    assert not again.created and again.session.key == "a/b"  # the live one; the caller checks the target
    assert again.claim == Claim([(10, 20)], [(0, 10)])
    await store.update(s.id, 0, SessionChanges(state=SessionState.EXPIRED))
    third = await store.claim(WriteIntent(s.id, "C", 0, 5, create=make(s.id, key="new")), 0.0, 30.0)
    assert third.created and third.session.key == "new" and third.claim == Claim([(0, 5)], [])
    with pytest.raises(SessionNotFound):
        await store.claim(WriteIntent("nope", "D", 0, 1), 0.0, 30.0)


@pytest.mark.anyio
async def test_find_filters_and_pages(store: SessionStore) -> None:
    ids = sorted(uuid.uuid4().hex for _ in range(5))
    for i, sid in enumerate(ids):
        await store.create(make(sid, owner=f"o{i % 2}", family="f" if i < 3 else "g", key="same" if i < 2 else "x"))
    await store.update(ids[4], 0, SessionChanges(state=SessionState.EXPIRED))
    live = (SessionState.OPEN, SessionState.COMMITTING, SessionState.COMMITTED)
    q = SessionQuery
    assert [s.id for s in await store.find(q(namespace="ns", key="same", states=live))] == ids[:2]
    assert [s.id for s in await store.find(q())] == ids
    assert [s.id for s in await store.find(q(owner="o0"))] == [ids[0], ids[2], ids[4]]
    assert [s.id for s in await store.find(q(family="g"))] == ids[3:]
    assert [s.id for s in await store.find(q(states=(SessionState.OPEN,)))] == ids[:4]
    assert [s.id for s in await store.find(q(limit=2))] == ids[:2]
    assert [s.id for s in await store.find(q(after=ids[1], limit=2))] == ids[2:4]
    assert [s.id for s in await store.find(q(storage_ref="ref-1", limit=10))] == ids
    assert await store.find(q(storage_ref="other")) == []


# -- claims and records ---------------------------------------------------------------------------
@pytest.mark.anyio
async def test_claim_hands_out_gaps_and_reports_busy(store: SessionStore) -> None:
    s = make()
    await store.create(s)
    a = await claim(store, s.id, "A", 10, 30, now=0.0, lease=30.0)
    assert a.to_write == [(10, 30)] and a.busy == []
    await record(store, s.id, "A", [(10, 20)], now=1.0, expires_at=100.0)  # A recorded part and released all
    b = await claim(store, s.id, "B", 0, 50, now=1.0, lease=30.0)
    assert b.to_write == [(0, 10), (20, 50)] and b.busy == []
    c = await claim(store, s.id, "C", 5, 60, now=2.0, lease=30.0)
    assert c.to_write == [(50, 60)]
    assert c.busy == [(5, 10), (20, 50)]
    # a token claiming again gets what it holds back (a writer waiting for the busy parts re-claims)
    assert await claim(store, s.id, "C", 5, 60, now=2.5, lease=30.0) == c
    # fully received range: nothing to write, nothing busy
    assert await claim(store, s.id, "D", 12, 18, now=2.0, lease=30.0) == Claim([], [])


@pytest.mark.anyio
async def test_expired_claim_is_taken_over(store: SessionStore) -> None:
    s = make()
    await store.create(s)
    assert (await claim(store, s.id, "old", 0, 40, now=0.0, lease=10.0)).to_write == [(0, 40)]
    assert (await claim(store, s.id, "new", 0, 40, now=5.0, lease=10.0)).busy == [(0, 40)]
    assert await store.renew(s.id, "old", now=9.0, lease=10.0)  # renewed until 19
    waiting = await claim(store, s.id, "new", 0, 40, now=15.0, lease=10.0)
    assert waiting.to_write == [] and waiting.taken_over == 0
    taken = await claim(store, s.id, "new", 0, 40, now=20.0, lease=10.0)
    assert taken.to_write == [(0, 40)] and taken.busy == []
    assert taken.taken_over == 1  # the stale claim it dropped (the engine reports take-overs from this)
    assert not await store.renew(s.id, "old", now=21.0, lease=10.0)
    with pytest.raises(WriteInterrupted):
        await record(store, s.id, "old", [(0, 40)], now=21.0, expires_at=100.0)
    assert list(await store.ranges(s.id)) == [] and await store.pieces(s.id) == []
    done = await record(store, s.id, "new", [(0, 40)], now=22.0, expires_at=100.0)
    assert done.received == 40


@pytest.mark.anyio
async def test_append_checks_the_prefix_and_claims_in_one_step(store: SessionStore) -> None:
    s = make()
    await store.create(s)
    first = await append(store, s.id, "A", 0, 10, now=0.0, lease=30.0)
    assert first.prefix == 0 and first.claim is not None and first.claim.to_write == [(0, 10)]
    assert first.session == s
    # a second appender at the same offset finds the live claim: nothing claimed, the range is busy
    second = await append(store, s.id, "B", 0, 10, now=1.0, lease=30.0)
    assert second.claim is not None and second.claim.to_write == [] and second.claim.busy == [(0, 10)]
    assert not await busy(store, s.id, 10, 100)  # B claimed nothing beyond A's range either
    await record(store, s.id, "A", [(0, 10)], now=2.0, expires_at=100.0)
    # a range received out of order beyond the prefix does not move it
    c = await claim(store, s.id, "C", 50, 60, now=2.0, lease=30.0)
    await record(store, s.id, "C", c.to_write, now=2.0, expires_at=100.0)
    wrong = await append(store, s.id, "D", 20, 30, now=3.0, lease=30.0)
    assert wrong.prefix == 10 and wrong.claim is None and wrong.session.received == 20
    assert not await busy(store, s.id, 0, 100)
    # an append over the stray range claims only its gaps
    ok = await append(store, s.id, "E", 10, 70, now=3.0, lease=30.0)
    assert ok.claim is not None and ok.claim.to_write == [(10, 50), (60, 70)]
    with pytest.raises(SessionNotFound):
        await append(store, "nope", "F", 0, 1, now=0.0, lease=30.0)


@pytest.mark.anyio
async def test_append_takes_over_expired_claims_only(store: SessionStore) -> None:
    s = make()
    await store.create(s)
    await append(store, s.id, "old", 0, 40, now=0.0, lease=2.0)  # lease until 2
    live = await append(store, s.id, "new", 0, 40, now=1.0, lease=2.0)
    assert live.claim is not None and live.claim.busy == [(0, 40)]
    taken = await append(store, s.id, "new", 0, 40, now=2.5, lease=2.0)
    assert taken.claim is not None and taken.claim.to_write == [(0, 40)] and taken.claim.busy == []
    assert not await store.renew(s.id, "old", now=3.0, lease=2.0)


@pytest.mark.anyio
async def test_claims_nothing_in_a_session_that_is_not_open(store: SessionStore) -> None:
    s = make()
    await store.create(s)
    await store.update(s.id, 0, SessionChanges(state=SessionState.COMMITTED))
    for mode in ClaimMode:
        got = await store.claim(WriteIntent(s.id, "A", 0, 10, mode), 0.0, 30.0)
        assert got.claim is None and got.prefix == 0 and got.session.state is SessionState.COMMITTED
    await store.update(s.id, 1, SessionChanges(state=SessionState.OPEN))
    assert not await busy(store, s.id, 0, 100)


@pytest.mark.anyio
async def test_allocate_claims_fresh_bytes_after_everything(store: SessionStore) -> None:
    s = make(length=None)
    await store.create(s)
    a = await store.claim(WriteIntent(s.id, "A", 0, 10, ClaimMode.ALLOCATE), 0.0, 30.0)
    b = await store.claim(WriteIntent(s.id, "B", 0, 5, ClaimMode.ALLOCATE), 0.0, 30.0)
    assert a.claim == Claim([(0, 10)], []) and b.claim == Claim([(10, 15)], [])  # parallel writers never wait
    await store.record(s.id, "B", [Piece("r", 10, 15, "hb", "block-b")], 1.0, 100.0)
    await store.release(s.id, "A")  # A failed: its bytes are never recorded
    c = await store.claim(WriteIntent(s.id, "C", 0, 1, ClaimMode.ALLOCATE), 2.0, 30.0)
    assert c.claim == Claim([(15, 16)], [])
    await store.record(s.id, "C", [Piece("r", 15, 15, "", "empty-block")], 2.0, 100.0)  # an empty piece, tagged
    d = await store.claim(WriteIntent(s.id, "D", 0, 3, ClaimMode.ALLOCATE), 3.0, 30.0)
    assert d.claim == Claim([(16, 19)], [])
    assert await store.pieces(s.id) == [Piece("r", 10, 15, "hb", "block-b"), Piece("r", 15, 15, "", "empty-block")]


@pytest.mark.anyio
async def test_guards_are_checked_when_claiming_and_recording(store: SessionStore) -> None:
    s = make()
    await store.create(s)
    await store.put_resource(Resource(kind="box", id="b1", tenant="t", owner="o", data={"state": "open"},
                                      created_at=0.0, modified_at=0.0))
    guard = Guard("box", "b1", "state", "open")
    ok = await store.claim(WriteIntent(s.id, "A", 0, 10, guard=guard), 0.0, 30.0)
    assert ok.guard_state == "open" and ok.claim is not None
    await store.update_resource("box", "b1", 0, {"state": "sealed"}, 1.0)
    with pytest.raises(GuardFailed) as info:
        await store.record(s.id, "A", [Piece("r", 0, 10)], 1.0, 100.0, guard=guard)
    assert info.value.state == "sealed"
    assert await store.ranges(s.id) == RangeSet()  # nothing recorded
    refused = await store.claim(WriteIntent(s.id, "B", 0, 10, guard=guard), 2.0, 30.0)
    assert refused.guard_state == "sealed" and refused.claim is None
    gone = await store.claim(WriteIntent(s.id, "B", 0, 10, guard=Guard("box", "missing", "state", "open")), 2.0, 30.0)
    assert gone.guard_state == "" and gone.claim is None


@pytest.mark.anyio
async def test_release_drops_claims_without_recording(store: SessionStore) -> None:
    s = make()
    await store.create(s)
    await claim(store, s.id, "A", 0, 10, now=0.0, lease=30.0)
    await store.release(s.id, "A")
    assert (await claim(store, s.id, "B", 0, 10, now=0.0, lease=30.0)).to_write == [(0, 10)]
    assert (await store.get(s.id)).received == 0  # type: ignore[union-attr]


@pytest.mark.anyio
async def test_record_merges_and_counts_new_bytes_exactly(store: SessionStore) -> None:
    s = make(length=1000)
    await store.create(s)
    version = 0
    model: set[int] = set()
    # pieces never overlap (claims see to that), but they merge with the ranges around them
    steps = [[(100, 200)], [(300, 400)], [(200, 300)], [(0, 50), (50, 60)], [(90, 100), (400, 500)],
             [(60, 90), (500, 1000)]]
    for i, written in enumerate(steps):
        tok = f"t{i}"
        await claim(store, s.id, tok, 0, 1000, now=0.0, lease=30.0)
        got = await store.record(s.id, tok, [Piece("ref", a, b, f"{i}-{a}") for a, b in written], float(i),
                                 500.0 + i)
        for a, b in written:
            model.update(range(a, b))
        assert got.session.received == len(model)
        assert got.session.version == version + 1
        assert got.session.modified_at == float(i) and got.session.expires_at == 500.0 + i
        version = got.session.version
        assert await store.ranges(s.id) == RangeSet((p, p + 1) for p in model)
    assert list(await store.ranges(s.id)) == [(0, 1000)]


@pytest.mark.anyio
async def test_record_keeps_pieces_with_their_handles(store: SessionStore) -> None:
    s = make(length=100)
    await store.create(s)
    await claim(store, s.id, "A", 0, 100, now=0.0, lease=30.0)
    pieces = [Piece("ref-x", 60, 100, "obj/60"), Piece("ref-x", 0, 60, "obj/0", "tag")]
    got = await store.record(s.id, "A", pieces, 1.0, 100.0, missing_limit=5)
    assert got.session.received == 100 and got.missing == []
    assert await store.pieces(s.id) == sorted(pieces, key=lambda p: p.start)


@pytest.mark.anyio
async def test_record_returns_the_first_missing_ranges(store: SessionStore) -> None:
    s = make(length=100)
    await store.create(s)
    await claim(store, s.id, "A", 0, 100, now=0.0, lease=30.0)
    got = await store.record(s.id, "A", [Piece("r", 10, 20), Piece("r", 30, 40)], 1.0, 100.0, missing_limit=2)
    assert got.missing == [(0, 10), (20, 30)]
    assert (await store.record(s.id, "A", [], 1.0, 100.0)).missing is None


@pytest.mark.anyio
async def test_record_that_completes_an_auto_commit_session_starts_its_commit(store: SessionStore) -> None:
    auto, manual = make(length=10).evolve(commit_on_complete=True), make(length=10)
    for s in (auto, manual):
        await store.create(s)
        await claim(store, s.id, "A", 0, 10, now=0.0, lease=30.0)
        half = await record(store, s.id, "A", [(0, 5)], now=1.0, expires_at=100.0)
        assert half.state is SessionState.OPEN
        await claim(store, s.id, "B", 0, 10, now=0.0, lease=30.0)
        done = await record(store, s.id, "B", [(5, 10)], now=1.0, expires_at=100.0)
        assert done.complete
        assert done.state is (SessionState.COMMITTING if s is auto else SessionState.OPEN)
        assert (await store.get(s.id)) == done


@pytest.mark.anyio
async def test_record_into_a_dead_session_is_refused(store: SessionStore) -> None:
    s = make()
    await store.create(s)
    await claim(store, s.id, "A", 0, 10, now=0.0, lease=30.0)
    await store.update(s.id, 0, SessionChanges(state=SessionState.DELETED))
    with pytest.raises(SessionGone):
        await record(store, s.id, "A", [(0, 10)], now=1.0, expires_at=100.0)
    with pytest.raises(SessionNotFound):
        await record(store, "nope", "A", [(0, 10)], now=1.0, expires_at=100.0)


@pytest.mark.anyio
async def test_missing_lists_gaps_in_order_and_the_first_ones_with_a_limit(store: SessionStore) -> None:
    s = make(length=1000)
    await store.create(s)
    assert await store.missing(s.id, 1000) == [(0, 1000)]
    received = [(0, 10), (20, 30), (30, 35), (100, 200), (990, 1000)]
    for i, (a, b) in enumerate(received):
        c = await claim(store, s.id, f"t{i}", a, b, now=0.0, lease=30.0)
        await record(store, s.id, f"t{i}", c.to_write, now=1.0, expires_at=100.0)
    everything = [(10, 20), (35, 100), (200, 990)]
    assert await store.missing(s.id, 1000) == everything
    for limit in range(5):
        assert await store.missing(s.id, 1000, limit) == everything[:limit]
    assert await store.missing(s.id, 150) == [(10, 20), (35, 100)]  # a length inside the ranges clips
    assert await store.missing("nope", 10, 3) == [(0, 10)]


@pytest.mark.anyio
async def test_record_can_set_a_deferred_length_once(store: SessionStore) -> None:
    s = make(length=None)
    await store.create(s)
    got = await record(store, s.id, "t", [], now=1.0, expires_at=100.0, length=50)
    assert got.length == 50
    got = await record(store, s.id, "t", [], now=1.0, expires_at=100.0, length=70)
    assert got.length == 50


# -- compare-and-set, expiry, purge ---------------------------------------------------------------
@pytest.mark.anyio
async def test_update_is_compare_and_set(store: SessionStore) -> None:
    s = make()
    await store.create(s)
    got = await store.update(s.id, 0, SessionChanges(state=SessionState.COMMITTING, extra={"a": 1},
                                                     composed_into="ns/target", length=7))
    assert got.version == 1 and got.state is SessionState.COMMITTING
    assert got.extra == {"a": 1} and got.composed_into == "ns/target" and got.length == 7
    assert got.metadata == {"k": "v"} and got.ttl == 60.0  # untouched fields keep their values
    with pytest.raises(Conflict):
        await store.update(s.id, 0, SessionChanges(state=SessionState.OPEN))
    assert (await store.get(s.id)).state is SessionState.COMMITTING  # type: ignore[union-attr]
    with pytest.raises(SessionNotFound):
        await store.update("nope", 0, SessionChanges(state=SessionState.OPEN))


@pytest.mark.anyio
async def test_update_many_is_all_or_nothing(store: SessionStore) -> None:
    a, b, c = make(), make(), make()
    for s in (a, b, c):
        await store.create(s)
    committing = SessionChanges(state=SessionState.COMMITTING)
    done = await store.update_many([(a.id, 0, SessionChanges(state=SessionState.COMMITTING, extra={"x": 1})),
                                    (b.id, 0, committing)])
    assert [(s.id, s.version, s.state) for s in done] == [(a.id, 1, SessionState.COMMITTING),
                                                           (b.id, 1, SessionState.COMMITTING)]
    assert (await store.get(a.id)) == done[0] and done[0].extra == {"x": 1}
    # one stale version: nothing changes, not even the rows listed before it
    committed = SessionChanges(state=SessionState.COMMITTED)
    with pytest.raises(Conflict):
        await store.update_many([(c.id, 0, committed), (a.id, 0, committed)])
    got_c = await store.get(c.id)
    assert got_c is not None and got_c.version == 0 and got_c.state is SessionState.OPEN
    with pytest.raises(SessionNotFound):
        await store.update_many([(c.id, 0, committed), ("nope", 0, committed)])
    got_c = await store.get(c.id)
    assert got_c is not None and got_c.state is SessionState.OPEN
    assert await store.update_many([]) == []


@pytest.mark.anyio
async def test_expired_lists_live_sessions_past_expiry(store: SessionStore) -> None:
    soon, later, dead = make(expires_at=10.0), make(expires_at=20.0), make(expires_at=5.0)
    committed = make(expires_at=8.0, state=SessionState.COMMITTED)
    for s in (soon, later, dead, committed):
        await store.create(s)
    await store.update(dead.id, 0, SessionChanges(state=SessionState.DELETED))
    assert [s.id for s in await store.expired(15.0, 100)] == [committed.id, soon.id]
    assert [s.id for s in await store.expired(15.0, 1)] == [committed.id]
    assert await store.expired(1.0, 100) == []


@pytest.mark.anyio
async def test_purge_dead(store: SessionStore) -> None:
    old, recent, live = make(), make(), make()
    for s in (old, recent, live):
        await store.create(s)
    await claim(store, old.id, "t", 0, 10, now=0.0, lease=30.0)
    await record(store, old.id, "t", [(0, 5)], now=0.0, expires_at=10.0)
    await store.update(old.id, 1, SessionChanges(state=SessionState.EXPIRED, modified_at=100.0))
    await store.update(recent.id, 0, SessionChanges(state=SessionState.DELETED, modified_at=300.0))
    purged = await store.purge_dead(200.0)
    assert [s.id for s in purged] == [old.id] and purged[0].storage_ref == "ref-1"
    assert await store.get(old.id) is None
    assert list(await store.ranges(old.id)) == [] and await store.pieces(old.id) == []
    assert await store.get(recent.id) is not None and await store.get(live.id) is not None
    assert await store.purge_dead(200.0) == []


@pytest.mark.anyio
async def test_server_time_and_transaction_counter(store: SessionStore) -> None:
    import time

    assert abs(await store.server_time() - time.time()) < 5.0
    before = store.transactions  # type: ignore[attr-defined]
    await store.get("nope")
    await store.create(make())
    assert store.transactions == before + 2  # type: ignore[attr-defined]


# -- resources ------------------------------------------------------------------------------------
def resource(rid: str, *, tenant: str = "t1", parent: str = "", owner: str = "o1") -> Resource:
    return Resource(kind="printer", id=rid, tenant=tenant, owner=owner, data={"name": rid, "n": [1]},
                    created_at=1.0, modified_at=1.0, parent=parent)


@pytest.mark.anyio
async def test_resources_crud_and_cas(store: SessionStore) -> None:
    r = await store.put_resource(resource("r1"))
    assert await store.get_resource("printer", "r1") == r
    assert await store.get_resource("job", "r1") is None
    with pytest.raises(AlreadyExists):
        await store.put_resource(resource("r1"))
    updated = await store.update_resource("printer", "r1", 0, {"name": "new"}, now=5.0)
    assert updated.version == 1 and updated.data == {"name": "new"} and updated.modified_at == 5.0
    with pytest.raises(Conflict):
        await store.update_resource("printer", "r1", 0, {"name": "lost update"}, now=6.0)
    assert (await store.get_resource("printer", "r1")).data == {"name": "new"}  # type: ignore[union-attr]
    with pytest.raises(NotFound):
        await store.update_resource("printer", "missing", 0, {}, now=6.0)
    assert await store.delete_resource("printer", "r1")
    assert not await store.delete_resource("printer", "r1")
    assert await store.get_resource("printer", "r1") is None


@pytest.mark.anyio
async def test_delete_resources_in_one_call(store: SessionStore) -> None:
    def res(kind: str, rid: str) -> Resource:
        return Resource(kind=kind, id=rid, tenant="t", owner="o", parent="p", data={}, created_at=1.0,
                        modified_at=1.0, version=0)

    for i in range(3):
        await store.put_resource(res("block", f"b{i}"))
    await store.put_resource(res("other", "b0"))
    assert await store.delete_resources("block", ["b0", "b2", "missing"]) == 2
    assert [r.id for r in await store.list_resources("block")] == ["b1"]
    assert await store.get_resource("other", "b0") is not None  # same id, other kind: untouched
    assert await store.delete_resources("block", []) == 0


@pytest.mark.anyio
async def test_resource_listing_filters_and_pages(store: SessionStore) -> None:
    for rid, tenant, parent, owner in [("a", "t1", "", "o1"), ("b", "t1", "p", "o2"), ("c", "t2", "p", "o1"),
                                       ("d", "t1", "p", "o1")]:
        await store.put_resource(resource(rid, tenant=tenant, parent=parent, owner=owner))
    await store.put_resource(Resource(kind="job", id="j", tenant="t1", owner="o1", data={}, created_at=0.0,
                                      modified_at=0.0))
    ids = lambda rs: [r.id for r in rs]  # noqa: E731
    assert ids(await store.list_resources("printer")) == ["a", "b", "c", "d"]
    assert ids(await store.list_resources("printer", tenant="t1")) == ["a", "b", "d"]
    assert ids(await store.list_resources("printer", parent="p")) == ["b", "c", "d"]
    assert ids(await store.list_resources("printer", owner="o1", tenant="t1")) == ["a", "d"]
    assert ids(await store.list_resources("printer", limit=2)) == ["a", "b"]
    assert ids(await store.list_resources("printer", after="b")) == ["c", "d"]
    assert ids(await store.list_resources("job")) == ["j"]


# -- concurrency ----------------------------------------------------------------------------------
@pytest.mark.anyio
async def test_concurrent_claims_never_hand_out_a_byte_twice(store: SessionStore) -> None:
    import random

    import anyio

    s = make(length=10_000)
    await store.create(s)
    rnd = random.Random(7)
    requests = [(f"w{i}", a, a + rnd.randint(1, 3000)) for i, a in enumerate(rnd.sample(range(0, 7000), 24))]
    granted: list[tuple[int, int]] = []

    async def claimer(token: str, start: int, end: int) -> None:
        got = await claim(store, s.id, token, start, end, now=0.0, lease=30.0)
        granted.extend(got.to_write)
        if int(token[1:]) % 2:  # half of the writers record at once, so later claims see received ranges
            await record(store, s.id, token, got.to_write, now=1.0, expires_at=100.0)

    async with anyio.create_task_group() as tg:
        for token, start, end in requests:
            tg.start_soon(claimer, token, start, end)
    granted.sort()
    for a, b in itertools.pairwise(granted):
        assert a[1] <= b[0], f"{a} and {b} were both handed out"
    union = RangeSet(granted)
    assert union == RangeSet((a, b) for _, a, b in requests)


@pytest.mark.anyio
async def test_concurrent_creates_of_one_id_admit_exactly_one(store: SessionStore) -> None:
    import anyio

    sid = uuid.uuid4().hex
    outcomes: list[str] = []

    async def creator(n: int) -> None:
        try:
            await store.create(make(sid, key=f"k{n}"))
            outcomes.append("created")
        except SessionConflict:
            outcomes.append("conflict")

    async with anyio.create_task_group() as tg:
        for n in range(8):
            tg.start_soon(creator, n)
    assert sorted(outcomes) == ["conflict"] * 7 + ["created"]


# -- event outbox ---------------------------------------------------------------------------------
@pytest.mark.anyio
async def test_outbox_events_commit_with_their_state_change_once_per_session(store: SessionStore) -> None:
    s = make(length=10)
    await store.create(s)
    done = NewEvent("completed", s.id, 5.0)
    await claim(store, s.id, "w", 0, 4, now=1.0, lease=30.0)
    await store.record(s.id, "w", [Piece("ref-1", 0, 4, "h0")], 2.0, 100.0, on_complete=[done])
    assert await store.claim_events("n1", 3.0, 10.0, 10) == []  # not complete yet: no event
    await claim(store, s.id, "w", 4, 10, now=3.0, lease=30.0)
    await store.record(s.id, "w", [Piece("ref-1", 4, 10, "h4")], 4.0, 100.0, on_complete=[done])
    got = await store.claim_events("n1", 5.0, 10.0, 10)
    assert [(e.kind, e.session.id, e.session.received, e.attempts) for e in got] == [("completed", s.id, 10, 1)]
    assert await store.add_events([NewEvent("completed", s.id, 6.0)]) == 0  # once per session
    current = await store.get(s.id)
    assert current is not None
    committed = NewEvent("committed", s.id, 7.0, {"composed_into": "x"})
    with pytest.raises(Conflict):  # a change that fails writes no event
        await store.update(s.id, current.version + 5, SessionChanges(state=SessionState.COMMITTED), [committed])
    after = await store.update(s.id, current.version, SessionChanges(state=SessionState.COMMITTED), [committed])
    assert await store.add_events([committed]) == 0  # the race's loser adds nothing
    await store.update(after.id, after.version, SessionChanges(modified_at=9.0), [committed])
    got = await store.claim_events("n1", 8.0, 10.0, 10)
    assert [(e.kind, e.session.state, e.detail) for e in got] == [("committed", SessionState.COMMITTED,
                                                                    {"composed_into": "x"})]
    # other kinds are not de-duplicated; events of sessions that do not exist are skipped
    assert await store.add_events([NewEvent("created", s.id, 1.0), NewEvent("created", s.id, 1.0),
                                   NewEvent("created", "no-such-session", 1.0)]) == 2


@pytest.mark.anyio
async def test_outbox_update_many_writes_every_event_or_none(store: SessionStore) -> None:
    a, b = make(), make()
    await store.create(a)
    await store.create(b)
    events = [NewEvent("committed", a.id, 1.0), NewEvent("committed", b.id, 1.0)]
    with pytest.raises(Conflict):
        await store.update_many([(a.id, 0, SessionChanges(received=1)), (b.id, 9, SessionChanges(received=1))], events)
    assert await store.claim_events("n", 2.0, 5.0, 10) == []
    await store.update_many([(a.id, 0, SessionChanges(received=1)), (b.id, 0, SessionChanges(received=1))], events)
    assert sorted(e.session.id for e in await store.claim_events("n", 2.0, 5.0, 10)) == sorted([a.id, b.id])


@pytest.mark.anyio
async def test_outbox_lease_take_over_retry_and_purge(store: SessionStore) -> None:
    s = make()
    await store.create(s)
    await store.add_events([NewEvent("created", s.id, 1.0)])
    first = await store.claim_events("n1", 10.0, 5.0, 10)
    assert len(first) == 1
    assert await store.claim_events("n2", 12.0, 5.0, 10) == []  # leased to n1 until 15
    again = await store.claim_events("n2", 16.0, 5.0, 10)  # n1 died: its lease ended, n2 takes over
    assert [(e.id, e.attempts) for e in again] == [(first[0].id, 2)]
    assert not await store.event_delivered(first[0].id, "n1", 17.0)  # n1 no longer holds it
    assert await store.event_failed(again[0].id, "n2", 17.0, retry_at=30.0)  # receiver down: back off
    assert await store.claim_events("n1", 25.0, 5.0, 10) == []
    third = await store.claim_events("n1", 30.0, 5.0, 10)
    assert [(e.id, e.attempts) for e in third] == [(first[0].id, 3)]
    assert await store.event_delivered(third[0].id, "n1", 31.0)
    assert await store.claim_events("n2", 100.0, 5.0, 10) == []  # delivered: never again
    await store.add_events([NewEvent("deleted", s.id, 1.0)])
    (gone,) = await store.claim_events("n1", 40.0, 5.0, 10)
    assert await store.event_failed(gone.id, "n1", 41.0, retry_at=None)  # abandoned after its last attempt
    assert await store.claim_events("n1", 100.0, 5.0, 10) == []
    assert await store.purge_events(before=35.0) == 1
    assert await store.purge_events(before=50.0) == 1
    assert await store.purge_events(before=50.0) == 0


@pytest.mark.anyio
async def test_concurrent_event_claimers_never_share_an_event(store: SessionStore) -> None:
    import anyio

    s = make()
    await store.create(s)
    await store.add_events([NewEvent("created", s.id, float(i)) for i in range(40)])
    got: dict[str, list[str]] = {}

    async def claimer(node: str) -> None:
        while batch := await store.claim_events(node, 100.0, 60.0, 3):
            got.setdefault(node, []).extend(e.id for e in batch)

    async with anyio.create_task_group() as tg:
        for n in range(6):
            tg.start_soon(claimer, f"n{n}")
    every = [i for ids in got.values() for i in ids]
    assert len(every) == 40 and len(set(every)) == 40
