"""RangeSet against a naive model: a Python set of covered byte positions."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chunkd.core.ranges import RangeSet, gaps_of_sorted

LIMIT = 64  # small universe: collisions, adjacency and overlaps happen often

ranges = st.tuples(st.integers(0, LIMIT), st.integers(0, 16)).map(lambda t: (t[0], t[0] + t[1]))
queries = st.tuples(st.integers(0, LIMIT + 8), st.integers(0, LIMIT + 8)).map(lambda t: (min(t), max(t)))


def model(added: list[tuple[int, int]]) -> set[int]:
    return {i for s, e in added for i in range(s, e)}


def runs(positions: set[int], start: int, end: int) -> list[tuple[int, int]]:
    """Maximal runs of consecutive positions of ``positions`` within [start, end)."""
    out: list[tuple[int, int]] = []
    for i in range(start, end):
        if i in positions:
            if out and out[-1][1] == i:
                out[-1] = (out[-1][0], i + 1)
            else:
                out.append((i, i + 1))
    return out


@settings(max_examples=200, deadline=None)
@given(st.lists(ranges, max_size=25), queries)
def test_rangeset_matches_model(added: list[tuple[int, int]], query: tuple[int, int]) -> None:
    rs = RangeSet()
    for s, e in added:
        rs.add(s, e)
    bytes_ = model(added)
    qs, qe = query
    # stored ranges are disjoint, sorted, non-empty, not touching, and cover exactly the model
    stored = list(rs)
    assert all(s < e for s, e in stored)
    assert all(a[1] < b[0] for a, b in itertools.pairwise(stored))
    assert model(stored) == bytes_
    assert len(rs) == len(stored)
    assert rs.covered == len(bytes_)
    assert rs.contains(qs, qe) == all(i in bytes_ for i in range(qs, qe))
    assert rs.overlapping(qs, qe) == runs(bytes_, qs, qe)
    gaps = set(range(qs, qe)) - bytes_
    assert rs.gaps(qs, qe) == runs(gaps, qs, qe)
    assert rs.missing(qe) == runs(set(range(qe)) - bytes_, 0, qe)
    prefix = 0
    while prefix in bytes_:
        prefix += 1
    assert rs.contiguous_prefix() == prefix
    # order of insertion does not matter
    assert RangeSet(reversed(added)) == rs


@settings(max_examples=100, deadline=None)
@given(st.lists(ranges, max_size=25))
def test_add_is_idempotent(added: list[tuple[int, int]]) -> None:
    rs = RangeSet(added)
    before = list(rs)
    for s, e in added:
        rs.add(s, e)
    assert list(rs) == before


def test_adjacent_ranges_merge() -> None:
    rs = RangeSet([(0, 5), (10, 15)])
    rs.add(5, 10)
    assert list(rs) == [(0, 15)]
    assert rs.covered == 15


def test_range_swallowing_several() -> None:
    rs = RangeSet([(2, 3), (5, 6), (8, 9), (20, 30)])
    rs.add(1, 10)
    assert list(rs) == [(1, 10), (20, 30)]
    assert rs.covered == 19


def test_empty_range_is_ignored_and_always_contained() -> None:
    rs = RangeSet()
    rs.add(7, 7)
    assert list(rs) == []
    assert rs.contains(3, 3)
    assert rs.gaps(4, 4) == []
    assert rs.missing(0) == []


def test_missing_of_empty_set_is_whole_range() -> None:
    assert RangeSet().missing(10) == [(0, 10)]
    assert RangeSet().contiguous_prefix() == 0


def test_large_offsets() -> None:
    big = 1 << 40
    rs = RangeSet([(0, big), (big + 1, 2 * big)])
    assert rs.missing(2 * big) == [(big, big + 1)]
    assert rs.covered == 2 * big - 1
    assert rs.contiguous_prefix() == big


@pytest.mark.parametrize(("start", "end"), [(-1, 3), (5, 4)])
def test_bad_ranges_are_refused(start: int, end: int) -> None:
    with pytest.raises(ValueError):
        RangeSet().add(start, end)


@settings(max_examples=200, deadline=None)
@given(st.lists(ranges, max_size=25), st.booleans())
def test_from_sorted_equals_adding_one_by_one(added: list[tuple[int, int]], presort: bool) -> None:
    rows = sorted(added) if presort else added  # unsorted input must still be right (slow path)
    rs = RangeSet.from_sorted(rows)
    assert rs == RangeSet(added)
    assert rs.covered == len(model(added))


def test_from_sorted_refuses_bad_ranges() -> None:
    with pytest.raises(ValueError):
        RangeSet.from_sorted([(0, 4), (9, 3)])


@given(st.lists(ranges, max_size=25), st.integers(0, LIMIT + 8), st.one_of(st.none(), st.integers(0, 6)))
def test_gaps_of_sorted_is_a_prefix_of_the_model_gaps(added: list[tuple[int, int]], total: int,
                                                     limit: int | None) -> None:
    covered = model(added)
    expected = runs(set(range(total)) - covered, 0, total)
    consumed: list[tuple[int, int]] = []

    def stream() -> Iterator[tuple[int, int]]:
        for r in RangeSet(added):
            consumed.append(r)
            yield r

    got = gaps_of_sorted(stream(), total, limit)
    assert got == (expected if limit is None else expected[:limit])
    if limit is not None:  # it reads no more ranges than it needs: at most limit + 1
        assert len(consumed) <= limit + 1
