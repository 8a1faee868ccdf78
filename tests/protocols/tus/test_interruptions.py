"""Disconnect mid-PATCH keeps what arrived; a stale connection is taken over within a lease, a live one
keeps its upload."""

from __future__ import annotations

import hashlib
import os
import socket
import threading
import time

import httpx

from tests.protocols.tus.conftest import Create, offset_of, patch
from tests.serverproc import ServerProcess


def raw_patch_start(server: ServerProcess, path: str, offset: int, declared: int, body: bytes) -> socket.socket:
    """Open a PATCH declaring ``declared`` bytes and send only ``body``; the socket stays open."""
    sock = socket.create_connection(("127.0.0.1", server.port))
    head = (f"PATCH {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nTus-Resumable: 1.0.0\r\n"
            f"Content-Type: application/offset+octet-stream\r\nUpload-Offset: {offset}\r\n"
            f"Content-Length: {declared}\r\n\r\n").encode()
    sock.sendall(head + body)
    return sock


def wait_offset(client: httpx.Client, path: str, want: int, timeout: float = 10) -> int:
    deadline = time.monotonic() + timeout
    got = offset_of(client, path)
    while got != want and time.monotonic() < deadline:
        time.sleep(0.05)
        got = offset_of(client, path)
    return got


def test_disconnect_mid_patch_keeps_received_bytes(server: ServerProcess, client: httpx.Client,
                                                   create: Create) -> None:
    data = os.urandom(1 << 20)
    path = create(len(data))
    half = 300_001  # not a multiple of any buffer size
    sock = raw_patch_start(server, path, 0, len(data), data[:half])
    time.sleep(0.2)
    sock.close()
    assert wait_offset(client, path, half) == half
    r = patch(client, path, 0, data)
    assert r.status_code == 409 and r.headers["upload-offset"] == str(half)
    assert patch(client, path, half, data[half:]).status_code == 204
    got = client.get(path).content
    assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()


def test_stale_connection_is_taken_over(server: ServerProcess, client: httpx.Client, create: Create) -> None:
    data = os.urandom(200_000)
    path = create(len(data))
    stale = raw_patch_start(server, path, 0, len(data), data[:50_000])  # then silence, socket left open
    try:
        time.sleep(0.3)
        started = time.monotonic()
        # the retry waits for the silent holder's lease (2 s without a byte) and takes the upload over
        r = patch(client, path, 0, data)
        assert r.status_code == 204, r.text
        assert r.headers["upload-offset"] == str(len(data))
        assert time.monotonic() - started < 6  # a lease, not the old 10 s of 423s
        stale.sendall(os.urandom(100_000))  # the old request wakes up and must not write anything
        time.sleep(0.3)
    finally:
        stale.close()
    time.sleep(0.3)
    assert offset_of(client, path) == len(data)
    assert client.get(path).content == data


def test_a_live_connection_keeps_the_upload(server: ServerProcess, client: httpx.Client, create: Create) -> None:
    data = os.urandom(200_000)
    path = create(len(data))
    live = raw_patch_start(server, path, 0, len(data), data[:1000])
    stop = threading.Event()
    sent = [1000]

    def trickle() -> None:  # a slow but live client: a byte now and then renews its claim
        while not stop.is_set() and sent[0] < 40_000:
            live.sendall(data[sent[0]:sent[0] + 1000])
            sent[0] += 1000
            time.sleep(0.2)

    t = threading.Thread(target=trickle)
    t.start()
    try:
        time.sleep(0.3)
        busy = patch(client, path, 0, data)
        assert busy.status_code == 423, busy.text  # retryable "locked", after waiting one lease
    finally:
        stop.set()
        t.join()
        live.close()
    assert sent[0] > 5000 and wait_offset(client, path, sent[0]) == sent[0]  # the live request kept what it sent
