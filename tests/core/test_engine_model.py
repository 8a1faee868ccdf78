"""Random write sequences against a model: received ranges and the committed bytes must always agree."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chunkd.core.body import Body, ClientGone
from chunkd.core.engine import Engine, EngineConfig
from chunkd.core.errors import LengthMismatch
from chunkd.core.principal import Principal
from chunkd.core.ranges import RangeSet
from chunkd.metadata import open_store
from chunkd.storage.local import LocalStore

ALICE = Principal(kind="user", tenant="t", user="alice")
TOTAL = 2000


def content(start: int, end: int) -> bytes:
    return bytes((p * 13 + 5) % 256 for p in range(start, end))


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    tmp: Path = tmp_path_factory.mktemp("model")
    store = open_store(f"sqlite:///{tmp / 'meta.db'}", str(tmp))
    anyio.run(store.migrate)
    yield Engine(store, LocalStore(tmp / "store"), EngineConfig(durable=False))
    anyio.run(store.close)


ops = st.lists(st.tuples(
    st.integers(0, TOTAL - 1), st.integers(1, 700),
    st.sampled_from(["ok", "ok", "short", "long", "cut_keep", "cut_drop"]), st.integers(1, 400),
    st.integers(1, 300)), min_size=1, max_size=12)


async def pieces(data: bytes, size: int) -> Body:
    for i in range(0, len(data), size):
        yield data[i:i + size]


async def cut_after(data: bytes, keep: int, size: int) -> Body:
    async for piece in pieces(data[:keep], size):
        yield piece
    raise ClientGone()


@settings(max_examples=25, deadline=None)
@given(ops)
def test_random_writes_match_the_model(engine: Engine, operations: list[tuple[int, int, str, int, int]]) -> None:
    async def run() -> None:
        s = await engine.create_session(ALICE, "test", "model", "k", TOTAL)
        model = RangeSet()
        for start, length, kind, cut, piece in operations:
            end = min(TOTAL, start + length)
            data = content(start, end)
            if kind == "ok":
                result = await engine.write_range(s.id, ALICE, start, end, pieces(data, piece))
                assert result.new_bytes == sum(b - a for a, b in model.gaps(start, end))
                model.add(start, end)
            elif kind in ("short", "long"):
                bad = data[:-1] if kind == "short" else data + b"!"
                with pytest.raises(LengthMismatch):
                    await engine.write_range(s.id, ALICE, start, end, pieces(bad, piece))
            else:
                keep = min(cut, end - start - 1)
                with pytest.raises(ClientGone):
                    await engine.write_range(s.id, ALICE, start, end, cut_after(data, keep, piece),
                                             keep_partial=kind == "cut_keep")
                if kind == "cut_keep" and keep > 0:
                    model.add(start, start + keep)
            session = await engine.get_session(s.id)
            assert await engine.received(session) == model
            assert session.received == model.covered
        for start, end in model.missing(TOTAL):
            await engine.write_range(s.id, ALICE, start, end, pieces(content(start, end), 512))
        await engine.commit(s.id, ALICE)
        got = b"".join([p async for p in engine.read_object("model", "k", 0, TOTAL)])
        assert got == content(0, TOTAL)

    anyio.run(run)
