"""The shared bounded parsers (protocols/_parse.py) and the shared date format, on hostile values."""

from __future__ import annotations

import pytest

from chunkd.protocols._http import iso_date
from chunkd.protocols._parse import INT64_MAX, UINT64_MAX, JsonError, loads_json, parse_uint


@pytest.mark.parametrize(("text", "maximum", "want"), [
    ("0", UINT64_MAX, 0), ("007", UINT64_MAX, 7), (str(UINT64_MAX), UINT64_MAX, UINT64_MAX),
    ("0" * 5000 + "1", UINT64_MAX, 1), (str(INT64_MAX), INT64_MAX, INT64_MAX),
    (str(UINT64_MAX + 1), UINT64_MAX, None), (str(INT64_MAX + 1), INT64_MAX, None), ("9" * 5000, UINT64_MAX, None),
    ("", UINT64_MAX, None), (None, UINT64_MAX, None), (" 7", UINT64_MAX, None), ("+7", UINT64_MAX, None),
    ("-7", UINT64_MAX, None), ("7_0", UINT64_MAX, None), ("\u00b2", UINT64_MAX, None), ("\u0663", UINT64_MAX, None),
    ("7\n", UINT64_MAX, None), ("1e3", UINT64_MAX, None),
])
def test_parse_uint(text: str | None, maximum: int, want: int | None) -> None:
    assert parse_uint(text, maximum) == want


@pytest.mark.parametrize("raw", [b"[" * 100_000 + b"]" * 100_000, b"[" * 65 + b"]" * 65, b'{"a": NaN}', b"Infinity",
                                 b"-Infinity", b"1" * 5000, b"{not json", b"\xff\xfe\xfa", b""])
def test_loads_json_refuses(raw: bytes) -> None:
    with pytest.raises(JsonError):
        loads_json(raw)


def test_loads_json_accepts_up_to_the_depth_limit() -> None:
    assert loads_json(b"[" * 64 + b"]" * 64) is not None
    assert loads_json('{"a": [1, {"b": "\u00e9"}], "n": 1.5}') == {"a": [1, {"b": "é"}], "n": 1.5}
    assert loads_json(b"[" * 10 + b"]" * 10, max_depth=10) is not None
    with pytest.raises(JsonError):
        loads_json(b"[" * 11 + b"]" * 11, max_depth=10)


def test_iso_date_digits() -> None:
    ts = 1_670_000_859 + 513 / 1024  # exact in binary: .5009765625 s
    assert iso_date(ts, 7) == "2022-12-02T17:07:39.5009766Z"  # seven digits, as Graph's 100-ns ticks
    assert iso_date(ts) == "2022-12-02T17:07:39.500Z"
    assert iso_date(ts, 0) == "2022-12-02T17:07:39Z"
    assert iso_date(1_670_000_859.99999999, 7) == "2022-12-02T17:07:40.0000000Z"  # rounds up into the next second
