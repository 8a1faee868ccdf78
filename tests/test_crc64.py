"""Azure CRC-64: the native and pure-Python implementations agree with the published check value and with
each other, also when continued piecewise (how CheckedBody feeds request pieces); the off-loop MD5 gives
hashlib's digest however the pieces fall on its batches."""

import asyncio
import base64
import hashlib
import os
from collections.abc import AsyncIterator

import pytest

from chunkd import checksums as wire
from chunkd.checksums import OffLoopMd5
from chunkd.protocols import _blob_wire


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


@pytest.mark.parametrize("sizes", [[], [10], [100_000, 50_000], [1 << 20], [300_000] * 9, [(1 << 20) + 1, 5, 1 << 21]])
def test_off_loop_md5_matches_hashlib(sizes: list[int]) -> None:
    pieces = [os.urandom(n) for n in sizes]

    async def run() -> bytes:
        md5 = OffLoopMd5(batch=1 << 20, inline_below=128 << 10)
        for piece in pieces:
            await md5.update(piece)
        return await md5.digest()

    assert asyncio.run(run()) == hashlib.md5(b"".join(pieces)).digest()


def test_checked_body_still_refuses_a_wrong_md5_after_threaded_hashing() -> None:
    data = os.urandom(3 << 20)
    wrong = base64.b64encode(hashlib.md5(data + b"x").digest()).decode()

    async def pieces() -> AsyncIterator[bytes]:
        for i in range(0, len(data), 256 << 10):
            yield data[i:i + (256 << 10)]

    async def consume(headers: dict[str, str]) -> _blob_wire.CheckedBody:
        body = _blob_wire.CheckedBody(pieces(), len(data), headers)
        async for _ in body:
            pass
        return body

    good = asyncio.run(consume({"content-md5": base64.b64encode(hashlib.md5(data).digest()).decode()}))
    assert good.md5_b64 == base64.b64encode(hashlib.md5(data).digest()).decode()
    with pytest.raises(_blob_wire.BlobError) as bad:
        asyncio.run(consume({"content-md5": wrong}))
    assert bad.value.code == "Md5Mismatch"
