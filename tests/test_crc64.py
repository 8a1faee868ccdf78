"""Azure CRC-64: the native and pure-Python implementations agree with the published check value and with
each other, also when continued piecewise (how CheckedBody feeds request pieces)."""

import os

from chunkd import checksums as wire


def test_check_value_native_and_fallback() -> None:
    # the CRC-64/NVME check value of b"123456789" (Azure Storage uses this polynomial)
    assert wire.crc64(b"123456789") == 0xAE8B14860A799888
    assert wire._crc64_py(b"123456789") == 0xAE8B14860A799888
    assert wire._native_crc64 is not None


def test_piecewise_matches_whole() -> None:
    data = os.urandom(70_000)
    whole = wire.crc64(data)
    crc = 0
    for i in range(0, len(data), 4096):
        crc = wire.crc64(memoryview(data)[i:i + 4096], crc)
    assert crc == whole == wire._crc64_py(data)
