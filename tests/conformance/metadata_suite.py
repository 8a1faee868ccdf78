"""The SessionStore conformance suite: every metadata store runs these tests unchanged.

Implementations: SQLite (a fresh file per test) and PostgreSQL (one uniquely named database per test
session on 127.0.0.1:5432, user ``postgres``, trust auth, dropped at the end; tables are emptied between
tests). When PostgreSQL is unreachable its tests fail under CI (``CI=true``) and are skipped elsewhere.

What a store must guarantee (see :mod:`chunkd.metadata.base`):

* ``create`` inserts; a *dead* session with the same id is replaced (ranges and claims forgotten), a live
  one raises SessionConflict.
* ``claim`` hands out only the gaps of a range that no live claim holds, reports ranges other live claims
  hold as ``busy``, and first drops expired claims so the next writer takes over; the old holder's
  ``renew`` then returns False and its ``record`` raises WriteInterrupted.
* ``claim_append`` reads the session and its contiguous prefix and claims the append range in one
  transaction, only when the offset is the prefix and the session is open, and all or nothing.
* ``record`` merges adjacent and overlapping ranges, counts exactly the new bytes in ``received``, drops
  the writer's claims and bumps ``version``.
* ``update`` is a compare-and-set on ``version``; ``expired`` lists live sessions past their expiry;
  ``purge_dead`` forgets dead sessions; resources are documents with compare-and-set updates and
  keyset-paginated, filtered listings.
"""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from chunkd.core.errors import AlreadyExists, Conflict, NotFound, SessionConflict, SessionNotFound, WriteInterrupted
from chunkd.core.models import Resource, Session, SessionState
from chunkd.core.ranges import RangeSet
from chunkd.metadata import open_store
from chunkd.metadata.base import SessionStore

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
        conn.execute(sa.text("TRUNCATE sessions, session_ranges, claims, resources"))


def make(session_id: str | None = None, *, length: int | None = 100, expires_at: float = 1000.0,
         owner: str = "user:t:u", family: str = "test", state: SessionState = SessionState.OPEN,
         key: str = "a/b") -> Session:
    return Session(id=session_id or uuid.uuid4().hex, family=family, owner=owner, namespace="ns", key=key,
                   length=length, state=state, created_at=1.0, modified_at=1.0, expires_at=expires_at,
                   tenant="t", content_type="text/plain", name="b", metadata={"k": "v"}, storage_ref="ref-1",
                   extra={"ttl": 60, "nested": {"x": [1, 2]}})


# -- sessions -------------------------------------------------------------------------------------
@pytest.mark.anyio
async def test_create_and_get_round_trip(store: SessionStore) -> None:
    s = make()
    await store.create(s)
    got = await store.get(s.id)
    assert got == s
    assert await store.get("nope") is None
    assert await store.ranges(s.id) == RangeSet()


@pytest.mark.anyio
async def test_create_conflicts_with_live_and_replaces_dead(store: SessionStore) -> None:
    s = make()
    await store.create(s)
    with pytest.raises(SessionConflict):
        await store.create(make(s.id, key="other"))
    claim = await store.claim(s.id, "tok", 0, 10, now=0.0, lease=30.0)
    await store.record(s.id, "tok", claim.to_write, now=1.0, expires_at=100.0)
    dead = await store.update(s.id, 1, state=SessionState.DELETED)
    assert dead.state is SessionState.DELETED
    fresh = make(s.id, key="again", length=5)
    await store.create(fresh)
    got = await store.get(s.id)
    assert got is not None and got.key == "again" and got.received == 0 and got.version == 0
    assert list(await store.ranges(s.id)) == []
    # the old session's claims are gone too: the whole range is claimable
    assert (await store.claim(s.id, "t2", 0, 5, now=0.0, lease=30.0)).to_write == [(0, 5)]


@pytest.mark.anyio
async def test_by_target_and_list_sessions(store: SessionStore) -> None:
    ids = sorted(uuid.uuid4().hex for _ in range(5))
    for i, sid in enumerate(ids):
        await store.create(make(sid, owner=f"o{i % 2}", family="f" if i < 3 else "g", key="same" if i < 2 else "x"))
    await store.update(ids[4], 0, state=SessionState.EXPIRED)
    assert [s.id for s in await store.by_target("ns", "same")] == ids[:2]
    assert [s.id for s in await store.list_sessions()] == ids
    assert [s.id for s in await store.list_sessions(owner="o0")] == [ids[0], ids[2], ids[4]]
    assert [s.id for s in await store.list_sessions(family="g")] == ids[3:]
    assert [s.id for s in await store.list_sessions(states=(SessionState.OPEN,))] == ids[:4]
    assert [s.id for s in await store.list_sessions(limit=2)] == ids[:2]
    assert [s.id for s in await store.list_sessions(after=ids[1], limit=2)] == ids[2:4]


# -- claims and records ---------------------------------------------------------------------------
@pytest.mark.anyio
async def test_claim_hands_out_gaps_and_reports_busy(store: SessionStore) -> None:
    s = make()
    await store.create(s)
    a = await store.claim(s.id, "A", 10, 30, now=0.0, lease=30.0)
    assert a.to_write == [(10, 30)] and a.busy == []
    await store.record(s.id, "A", [(10, 20)], now=1.0, expires_at=100.0)  # A recorded part and released all
    b = await store.claim(s.id, "B", 0, 50, now=1.0, lease=30.0)
    assert b.to_write == [(0, 10), (20, 50)] and b.busy == []
    c = await store.claim(s.id, "C", 5, 60, now=2.0, lease=30.0)
    assert c.to_write == [(50, 60)]
    assert c.busy == [(5, 10), (20, 50)]
    # fully received range: nothing to write, nothing busy
    assert await store.claim(s.id, "D", 12, 18, now=2.0, lease=30.0) == type(a)([], [])
    with pytest.raises(SessionNotFound):
        await store.claim("nope", "E", 0, 1, now=0.0, lease=30.0)


@pytest.mark.anyio
async def test_expired_claim_is_taken_over(store: SessionStore) -> None:
    s = make()
    await store.create(s)
    assert (await store.claim(s.id, "old", 0, 40, now=0.0, lease=10.0)).to_write == [(0, 40)]
    assert (await store.claim(s.id, "new", 0, 40, now=5.0, lease=10.0)).busy == [(0, 40)]
    assert await store.renew(s.id, "old", now=9.0, lease=10.0)  # renewed until 19
    assert (await store.claim(s.id, "new", 0, 40, now=15.0, lease=10.0)).to_write == []
    taken = await store.claim(s.id, "new", 0, 40, now=20.0, lease=10.0)
    assert taken.to_write == [(0, 40)] and taken.busy == []
    assert not await store.renew(s.id, "old", now=21.0, lease=10.0)
    with pytest.raises(WriteInterrupted):
        await store.record(s.id, "old", [(0, 40)], now=21.0, expires_at=100.0)
    assert list(await store.ranges(s.id)) == []
    done = await store.record(s.id, "new", [(0, 40)], now=22.0, expires_at=100.0)
    assert done.received == 40


@pytest.mark.anyio
async def test_claim_append_checks_the_prefix_and_claims_in_one_step(store: SessionStore) -> None:
    s = make()
    await store.create(s)
    first = await store.claim_append(s.id, "A", 0, 10, now=0.0, lease=30.0, stale_before=0.0)
    assert first.prefix == 0 and first.claim is not None and first.claim.to_write == [(0, 10)]
    assert first.session == s
    # a second appender at the same offset finds the live claim: nothing claimed, the range is busy
    second = await store.claim_append(s.id, "B", 0, 10, now=1.0, lease=30.0, stale_before=1.0)
    assert second.claim is not None and second.claim.to_write == [] and second.claim.busy == [(0, 10)]
    assert not await store.claimed(s.id, 10, 100)  # B claimed nothing beyond A's range either
    await store.record(s.id, "A", [(0, 10)], now=2.0, expires_at=100.0)
    # a range received out of order beyond the prefix does not move it
    c = await store.claim(s.id, "C", 50, 60, now=2.0, lease=30.0)
    await store.record(s.id, "C", c.to_write, now=2.0, expires_at=100.0)
    wrong = await store.claim_append(s.id, "D", 20, 30, now=3.0, lease=30.0, stale_before=3.0)
    assert wrong.prefix == 10 and wrong.claim is None and wrong.session.received == 20
    assert not await store.claimed(s.id, 0, 100)
    # an append over the stray range claims only its gaps
    ok = await store.claim_append(s.id, "E", 10, 70, now=3.0, lease=30.0, stale_before=3.0)
    assert ok.claim is not None and ok.claim.to_write == [(10, 50), (60, 70)]
    with pytest.raises(SessionNotFound):
        await store.claim_append("nope", "F", 0, 1, now=0.0, lease=30.0, stale_before=0.0)


@pytest.mark.anyio
async def test_claim_append_takes_over_stale_claims_only(store: SessionStore) -> None:
    s = make()
    await store.create(s)
    await store.claim_append(s.id, "old", 0, 40, now=0.0, lease=30.0, stale_before=0.0)  # lease until 30
    live = await store.claim_append(s.id, "new", 0, 40, now=5.0, lease=30.0, stale_before=25.0)
    assert live.claim is not None and live.claim.busy == [(0, 40)]
    taken = await store.claim_append(s.id, "new", 0, 40, now=6.0, lease=30.0, stale_before=31.0)
    assert taken.claim is not None and taken.claim.to_write == [(0, 40)] and taken.claim.busy == []
    assert not await store.renew(s.id, "old", now=7.0, lease=30.0)


@pytest.mark.anyio
async def test_claim_append_claims_nothing_in_a_session_that_is_not_open(store: SessionStore) -> None:
    s = make()
    await store.create(s)
    await store.update(s.id, 0, state=SessionState.COMMITTED)
    got = await store.claim_append(s.id, "A", 0, 10, now=0.0, lease=30.0, stale_before=0.0)
    assert got.claim is None and got.prefix == 0 and got.session.state is SessionState.COMMITTED
    assert not await store.claimed(s.id, 0, 100)


@pytest.mark.anyio
async def test_claimed_sees_live_and_expired_claims_until_released_or_recorded(store: SessionStore) -> None:
    s = make()
    await store.create(s)
    assert not await store.claimed(s.id, 0, 100)
    await store.claim(s.id, "A", 10, 20, now=0.0, lease=1.0)
    assert await store.claimed(s.id, 0, 11) and await store.claimed(s.id, 19, 30) and await store.claimed(s.id, 12, 13)
    assert not await store.claimed(s.id, 0, 10) and not await store.claimed(s.id, 20, 30)
    assert await store.claimed(s.id, 15, 16)  # still there after its lease ran out: only a claim drops it
    await store.claim(s.id, "B", 30, 40, now=0.0, lease=30.0)
    await store.release(s.id, "A")
    assert not await store.claimed(s.id, 0, 30) and await store.claimed(s.id, 0, 31)
    await store.record(s.id, "B", [(30, 40)], now=1.0, expires_at=100.0)
    assert not await store.claimed(s.id, 0, 100)
    assert not await store.claimed("nope", 0, 100)


@pytest.mark.anyio
async def test_release_drops_claims_without_recording(store: SessionStore) -> None:
    s = make()
    await store.create(s)
    await store.claim(s.id, "A", 0, 10, now=0.0, lease=30.0)
    await store.release(s.id, "A")
    assert (await store.claim(s.id, "B", 0, 10, now=0.0, lease=30.0)).to_write == [(0, 10)]
    assert (await store.get(s.id)).received == 0  # type: ignore[union-attr]


@pytest.mark.anyio
async def test_record_merges_and_counts_new_bytes_exactly(store: SessionStore) -> None:
    s = make(length=1000)
    await store.create(s)
    version = 0
    model: set[int] = set()
    # written lists may overlap what is already there (the store must not double count)
    steps = [[(100, 200)], [(300, 400)], [(200, 300)], [(0, 50), (50, 60)], [(90, 110), (390, 500)],
             [(0, 1000)]]
    for i, written in enumerate(steps):
        tok = f"t{i}"
        await store.claim(s.id, tok, 0, 1000, now=0.0, lease=30.0)
        got = await store.record(s.id, tok, written, now=float(i), expires_at=500.0 + i)
        for a, b in written:
            model.update(range(a, b))
        assert got.received == len(model)
        assert got.version == version + 1
        assert got.modified_at == float(i) and got.expires_at == 500.0 + i
        version = got.version
        expected = RangeSet((p, p + 1) for p in model)
        assert await store.ranges(s.id) == expected
    assert list(await store.ranges(s.id)) == [(0, 1000)]
    assert await store.received_within(s.id, 10, 20) == [(10, 20)]


@pytest.mark.anyio
async def test_missing_lists_gaps_in_order_and_the_first_ones_with_a_limit(store: SessionStore) -> None:
    s = make(length=1000)
    await store.create(s)
    assert await store.missing(s.id, 1000) == [(0, 1000)]
    received = [(0, 10), (20, 30), (30, 35), (100, 200), (990, 1000)]
    for i, (a, b) in enumerate(received):
        c = await store.claim(s.id, f"t{i}", a, b, now=0.0, lease=30.0)
        await store.record(s.id, f"t{i}", c.to_write, now=1.0, expires_at=100.0)
    everything = [(10, 20), (35, 100), (200, 990)]
    assert await store.missing(s.id, 1000) == everything
    for limit in range(5):
        assert await store.missing(s.id, 1000, limit) == everything[:limit]
    assert await store.missing(s.id, 150) == [(10, 20), (35, 100)]  # a length inside the ranges clips
    assert await store.missing("nope", 10, 3) == [(0, 10)]


@pytest.mark.anyio
async def test_received_within_clips(store: SessionStore) -> None:
    s = make()
    await store.create(s)
    await store.claim(s.id, "t", 0, 100, now=0.0, lease=30.0)
    await store.record(s.id, "t", [(10, 20), (30, 40), (50, 60)], now=1.0, expires_at=100.0)
    assert await store.received_within(s.id, 15, 55) == [(15, 20), (30, 40), (50, 55)]
    assert await store.received_within(s.id, 20, 30) == []
    assert await store.received_within(s.id, 0, 100) == [(10, 20), (30, 40), (50, 60)]


@pytest.mark.anyio
async def test_record_can_set_a_deferred_length_once(store: SessionStore) -> None:
    s = make(length=None)
    await store.create(s)
    got = await store.record(s.id, "t", [], now=1.0, expires_at=100.0, length=50)
    assert got.length == 50
    got = await store.record(s.id, "t", [], now=1.0, expires_at=100.0, length=70)
    assert got.length == 50


# -- compare-and-set, expiry, purge ---------------------------------------------------------------
@pytest.mark.anyio
async def test_update_is_compare_and_set(store: SessionStore) -> None:
    s = make()
    await store.create(s)
    got = await store.update(s.id, 0, state=SessionState.COMMITTING, extra={"a": 1}, metadata={"m": "n"})
    assert got.version == 1 and got.state is SessionState.COMMITTING
    assert got.extra == {"a": 1} and got.metadata == {"m": "n"}
    with pytest.raises(Conflict):
        await store.update(s.id, 0, state=SessionState.OPEN)
    assert (await store.get(s.id)).state is SessionState.COMMITTING  # type: ignore[union-attr]
    with pytest.raises(SessionNotFound):
        await store.update("nope", 0, state=SessionState.OPEN)


@pytest.mark.anyio
async def test_update_many_is_all_or_nothing(store: SessionStore) -> None:
    a, b, c = make(), make(), make()
    for s in (a, b, c):
        await store.create(s)
    done = await store.update_many([(a.id, 0, {"state": SessionState.COMMITTING, "extra": {"x": 1}}),
                                    (b.id, 0, {"state": SessionState.COMMITTING})])
    assert [(s.id, s.version, s.state) for s in done] == [(a.id, 1, SessionState.COMMITTING),
                                                           (b.id, 1, SessionState.COMMITTING)]
    assert (await store.get(a.id)) == done[0] and done[0].extra == {"x": 1}
    # one stale version: nothing changes, not even the rows listed before it
    with pytest.raises(Conflict):
        await store.update_many([(c.id, 0, {"state": SessionState.COMMITTED}),
                                 (a.id, 0, {"state": SessionState.COMMITTED})])
    got_c = await store.get(c.id)
    assert got_c is not None and got_c.version == 0 and got_c.state is SessionState.OPEN
    with pytest.raises(SessionNotFound):
        await store.update_many([(c.id, 0, {"state": SessionState.COMMITTED}), ("nope", 0, {})])
    got_c = await store.get(c.id)
    assert got_c is not None and got_c.state is SessionState.OPEN
    assert await store.update_many([]) == []


@pytest.mark.anyio
async def test_expired_lists_live_sessions_past_expiry(store: SessionStore) -> None:
    soon, later, dead = make(expires_at=10.0), make(expires_at=20.0), make(expires_at=5.0)
    committed = make(expires_at=8.0, state=SessionState.COMMITTED)
    for s in (soon, later, dead, committed):
        await store.create(s)
    await store.update(dead.id, 0, state=SessionState.DELETED)
    assert [s.id for s in await store.expired(15.0, 100)] == [committed.id, soon.id]
    assert [s.id for s in await store.expired(15.0, 1)] == [committed.id]
    assert await store.expired(1.0, 100) == []


@pytest.mark.anyio
async def test_purge_dead_and_purge(store: SessionStore) -> None:
    old, recent, live = make(), make(), make()
    for s in (old, recent, live):
        await store.create(s)
    await store.claim(old.id, "t", 0, 10, now=0.0, lease=30.0)
    await store.record(old.id, "t", [(0, 5)], now=0.0, expires_at=10.0)
    await store.update(old.id, 1, state=SessionState.EXPIRED, modified_at=100.0)
    await store.update(recent.id, 0, state=SessionState.DELETED, modified_at=300.0)
    assert await store.purge_dead(200.0) == 1
    assert await store.get(old.id) is None
    assert list(await store.ranges(old.id)) == []
    assert await store.get(recent.id) is not None and await store.get(live.id) is not None
    await store.purge(live.id)
    assert await store.get(live.id) is None


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
        claim = await store.claim(s.id, token, start, end, now=0.0, lease=30.0)
        granted.extend(claim.to_write)
        if int(token[1:]) % 2:  # half of the writers record at once, so later claims see received ranges
            await store.record(s.id, token, claim.to_write, now=1.0, expires_at=100.0)

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
