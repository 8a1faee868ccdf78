"""Sets of byte ranges.

Ranges are half-open ``(start, end)`` pairs of ints throughout the core (``end`` exclusive); front ends
convert to the inclusive forms their protocols use. :class:`RangeSet` keeps disjoint, merged ranges in a
sorted dict keyed by start, so locating a range is O(log n) and adding one is O(log n + k) for the k
ranges it swallows.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from sortedcontainers import SortedDict

__all__ = ["Range", "RangeSet"]

Range = tuple[int, int]


def gaps_of_sorted(ranges: Iterable[Range], total: int, limit: int | None = None) -> list[Range]:
    """The first ``limit`` (all when None) gaps in ``[0, total)`` between sorted, disjoint ``ranges``.
    Stops reading ``ranges`` as soon as it has them, so a store can stream its rows into it."""
    out: list[Range] = []
    if limit is not None and limit <= 0:
        return out
    pos = 0
    for s, e in ranges:
        if s >= total:
            break
        if s > pos:
            out.append((pos, s))
            if limit is not None and len(out) >= limit:
                return out  # before pulling another range from the caller's stream
        pos = max(pos, e)
    if pos < total and (limit is None or len(out) < limit):
        out.append((pos, total))
    return out


class RangeSet:
    """Disjoint, merged half-open byte ranges; adjacent ranges merge."""

    __slots__ = ("_covered", "_starts")

    def __init__(self, ranges: Iterable[Range] = ()) -> None:
        self._starts: SortedDict = SortedDict()
        self._covered = 0  # kept up to date by add() so that ``covered`` is O(1)
        for start, end in ranges:
            self.add(start, end)

    @classmethod
    def from_sorted(cls, ranges: Iterable[Range]) -> RangeSet:
        """Build from ranges sorted by start, e.g. rows of a store ordered by start; ranges that overlap or
        touch are merged as by :meth:`add`. One pass and one bulk SortedDict build instead of n inserts
        (a session's missing-range query loads every received range). Unsorted input is still correct
        (it falls back to :meth:`add`), only slower."""
        merged: list[list[int]] = []
        items = iter(ranges)
        for start, end in items:
            if start < 0 or end < start:
                raise ValueError(f"bad range {start}-{end}")
            if start == end:
                continue
            if merged and start < merged[-1][0]:
                rs = cls((s, e) for s, e in merged)
                rs.add(start, end)
                for s, e in items:
                    rs.add(s, e)
                return rs
            if merged and start <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], end)
            else:
                merged.append([start, end])
        rs = cls()
        rs._starts = SortedDict((s, e) for s, e in merged)
        rs._covered = sum(e - s for s, e in merged)
        return rs

    def __iter__(self) -> Iterator[Range]:
        return iter(self._starts.items())

    def __len__(self) -> int:
        return len(self._starts)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RangeSet) and list(self) == list(other)

    def __repr__(self) -> str:
        return f"RangeSet({list(self)!r})"

    @property
    def covered(self) -> int:
        """Number of bytes covered."""
        return self._covered

    def add(self, start: int, end: int) -> None:
        """Add ``[start, end)``, merging with every range it overlaps or touches."""
        if start < 0 or end < start:
            raise ValueError(f"bad range {start}-{end}")
        if start == end:
            return
        starts = self._starts
        if not starts or start > starts[starts.keys()[-1]]:
            # beyond the last range (how the store loads sorted rows): nothing to merge; O(log n) append
            starts[start] = end
            self._covered += end - start
            return
        idx = starts.bisect_right(start)
        if idx > 0:
            prev_start = starts.keys()[idx - 1]
            prev_end = starts[prev_start]
            if prev_end >= start:
                if prev_end >= end:
                    return
                start = prev_start
                idx -= 1
        keys = starts.keys()
        while idx < len(keys) and keys[idx] <= end:
            key = keys[idx]
            stop = starts[key]
            self._covered -= stop - key
            end = max(end, stop)
            del starts[key]
        starts[start] = end
        self._covered += end - start

    def contains(self, start: int, end: int) -> bool:
        """True when every byte of ``[start, end)`` is covered (an empty range is always covered)."""
        if start >= end:
            return True
        idx = self._starts.bisect_right(start)
        if idx == 0:
            return False
        key = self._starts.keys()[idx - 1]
        return bool(self._starts[key] >= end)

    def overlapping(self, start: int, end: int) -> list[Range]:
        """The covered ranges that intersect ``[start, end)``, clipped to it."""
        out: list[Range] = []
        if start >= end:
            return out
        starts = self._starts
        idx = starts.bisect_right(start)
        if idx > 0:  # the range starting at or before ``start`` may reach into the query
            key = starts.keys()[idx - 1]
            stop = starts[key]
            if stop > start:
                out.append((start, min(stop, end)))
        # the ranges starting inside (start, end): iterated, not indexed one by one (O(k), not O(k log n))
        for key in starts.irange(start, end, inclusive=(False, False)):
            out.append((key, min(starts[key], end)))
        return out

    def gaps(self, start: int, end: int) -> list[Range]:
        """The parts of ``[start, end)`` that are *not* covered."""
        out: list[Range] = []
        pos = start
        for s, e in self.overlapping(start, end):
            if s > pos:
                out.append((pos, s))
            pos = e
        if pos < end:
            out.append((pos, end))
        return out

    def missing(self, total: int) -> list[Range]:
        """The gaps in ``[0, total)``."""
        return self.gaps(0, total)

    def contiguous_prefix(self) -> int:
        """Length of the covered run that starts at byte 0."""
        if not self._starts or self._starts.keys()[0] != 0:
            return 0
        return int(self._starts[0])
