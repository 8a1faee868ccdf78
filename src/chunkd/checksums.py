"""Azure Storage's CRC-64 (the ``x-ms-content-crc64`` check): Microsoft's native implementation from
azure-storage-extensions (~1.8 GB/s measured here), with a pure-Python table loop (~7 MB/s) kept for platforms
without the wheel. Both give the same check value and can be continued piece by piece.

A neutral helper, not a backend: the Blob front end hashes request bodies with it as they stream in."""

from __future__ import annotations

from typing import Any

_CRC_POLY = 0x9A6C9329AC4BC9B5  # Azure Storage CRC-64 (reflected form of the NVMe polynomial)
_MASK = (1 << 64) - 1


def _table() -> list[int]:
    out = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ _CRC_POLY if c & 1 else c >> 1
        out.append(c)
    return out


_CRC_TABLE = _table()


def _crc64_py(data: bytes, crc: int = 0) -> int:
    """Azure's CRC-64 of ``data`` continuing from ``crc``, pure Python (~7 MB/s): the fallback when the
    native wheel is missing."""
    crc = ~crc & _MASK
    table = _CRC_TABLE
    for b in data:
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return ~crc & _MASK


_native_crc64: Any
try:  # Microsoft's native CRC-64 (~1.8 GB/s): the same check value, ~250x faster than the table loop
    from azure.storage.extensions.checksums import crc64 as _native_crc64
except ImportError:  # pragma: no cover - the wheel is a core dependency; kept for platforms without it
    _native_crc64 = None


def crc64(data: bytes, crc: int = 0) -> int:
    """Azure's CRC-64 of ``data`` continuing from ``crc`` (native when available, else pure Python)."""
    if _native_crc64 is not None:
        return int(_native_crc64.compute(bytes(data), crc))
    return _crc64_py(data, crc)


