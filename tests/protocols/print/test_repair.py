"""A crash between the last byte being recorded and the document being marked uploaded is repaired on the
next look at the document. The state is made by a second engine on the server's data directory (as another
server process would) that records the last bytes and then stops, without committing."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio

from chunkd.auth.tokens import DEFAULT_TENANT
from chunkd.core.engine import Engine
from chunkd.core.principal import Principal
from chunkd.metadata import open_store
from chunkd.storage import open_byte_store
from tests.protocols.print.conftest import ALICE, PrintEnv, graph_error


async def _one_piece(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def _write_last_bytes(data_dir: str, session_id: str, owner: Principal) -> bool:
    store = open_store("sqlite", data_dir)
    try:
        engine = Engine(store, open_byte_store("local", data_dir))
        await engine.write_range(session_id, owner, 5, 10, _one_piece(b"56789"))
        return (await engine.get_session(session_id)).complete
    finally:
        await store.close()


def test_complete_session_without_document_update_is_repaired(env: PrintEnv) -> None:
    alice = env.user(ALICE, "PrintJob.ReadWrite")
    job, _, doc = env.new_job(alice)
    sid = env.open_seed_session(doc, alice, 10).json()["id"]
    assert env.client.post(doc + "/uploadSession/$value", content=b"01234",
                           headers={**alice, "Content-Range": "bytes 0-4/10"}).status_code == 202
    graph_error(env.client.post(f"{env.jobs_url()}/{job}/start", headers=alice), 409, "conflict")
    owner = Principal(kind="user", tenant=DEFAULT_TENANT, user=ALICE)
    assert anyio.run(_write_last_bytes, str(env.server.data_dir), sid, owner)
    meta = env.client.get(doc, headers=alice).json()
    assert meta["size"] == 10 and meta["uploadedDateTime"]
    assert env.client.get(doc + "/$value", headers=alice).content == b"0123456789"
    assert env.client.post(f"{env.jobs_url()}/{job}/start", headers=alice).status_code == 200
