"""Where chunkd's Azure Blob container is, how it signs in, and the two requests it sends itself.

``azure://ACCOUNT/CONTAINER[/PREFIX][?endpoint=URL]`` names the container (``endpoint`` defaults to
``https://ACCOUNT.blob.core.windows.net``; Azurite: ``http://127.0.0.1:10000/ACCOUNT``). The key comes
from ``AZURE_STORAGE_KEY``, or from a full ``AZURE_STORAGE_CONNECTION_STRING`` (its ``AccountKey`` or
``SharedAccessSignature``, and its ``BlobEndpoint`` when the URL names none).

Control calls (block lists, copies, listings, deletes, properties) go through azure-storage-blob's
asyncio client. The two calls that carry bytes -- Put Block for every piece, Get Blob for every read --
are plain aiohttp requests on the same connection pool, authorised by a container SAS that this process
signs for itself: measured here, the SDK's pipeline costs ~2 ms of CPU per 64 KiB Put Block and this
path ~0.4 ms (bench/README.md, "Azure Blob client libraries"), and the SDK's downloader cannot stream one
GET (it reads ranges with If-Match, so a read of a replaced object would fail instead of finishing with
the old bytes, as the port requires).
"""

from __future__ import annotations

import asyncio
import base64
import os
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, quote, urlsplit

import aiohttp
from azure.core.pipeline.transport import AioHttpTransport
from azure.storage.blob import generate_container_sas
from azure.storage.blob.aio import ContainerClient

from chunkd.storage._azure_errors import from_status, from_transport

__all__ = ["AzureConnection", "AzureTarget", "parse_target"]

API_VERSION = "2025-01-05"  # for the store's own requests; any version since 2019-12-12 has what they need
SAS_LIFETIME = timedelta(hours=6)
RETRIES = 3  # Put Block and Get Blob are idempotent: retried on refused connections and 5xx
READ_CHUNK = 1 << 20


@dataclass(frozen=True)
class AzureTarget:
    account: str
    container: str
    prefix: str  # "" or "some/prefix/": every blob name of this store starts with it
    endpoint: str  # account endpoint, no trailing "/"
    key: str | None  # base64 account key
    sas: str | None  # a SAS token to use instead of a key


def parse_target(url: str, env: Mapping[str, str] | None = None) -> AzureTarget:
    """Parse ``azure://ACCOUNT/CONTAINER[/PREFIX][?endpoint=URL]`` and the key from ``env``
    (default: the process environment). ValueError says what is wrong or missing."""
    env = os.environ if env is None else env
    parts = urlsplit(url)
    segments = [s for s in parts.path.split("/") if s]
    if parts.scheme != "azure" or not parts.netloc or not segments:
        raise ValueError(f"expected azure://ACCOUNT/CONTAINER[/PREFIX][?endpoint=URL], not {url!r}")
    account, container = parts.netloc, segments[0]
    prefix = "".join(f"{s}/" for s in segments[1:])
    query = parse_qs(parts.query)
    unknown = set(query) - {"endpoint"}
    if unknown:
        raise ValueError(f"unknown azure storage option(s): {', '.join(sorted(unknown))} (known: endpoint)")
    conn = _connection_string(env.get("AZURE_STORAGE_CONNECTION_STRING", ""))
    if conn.get("AccountName", account) != account:
        raise ValueError(f"AZURE_STORAGE_CONNECTION_STRING is for account {conn['AccountName']!r}, not {account!r}")
    endpoint = (query.get("endpoint", [""])[0] or conn.get("BlobEndpoint")
                or f"{conn.get('DefaultEndpointsProtocol', 'https')}://{account}.blob."
                   f"{conn.get('EndpointSuffix', 'core.windows.net')}").rstrip("/")
    key = env.get("AZURE_STORAGE_KEY") or conn.get("AccountKey")
    sas = None if key else (conn.get("SharedAccessSignature") or "").lstrip("?") or None
    if not key and not sas:
        raise ValueError("the azure byte store needs AZURE_STORAGE_KEY or AZURE_STORAGE_CONNECTION_STRING")
    return AzureTarget(account, container, prefix, endpoint, key, sas)


def _connection_string(text: str) -> dict[str, str]:
    pairs = (item.split("=", 1) for item in text.split(";") if "=" in item)
    return {k.strip(): v.strip() for k, v in pairs}


class AzureConnection:
    """One container: the SDK client for control calls, aiohttp for bytes, on one connection pool per
    event loop (created on first use, since the store is built before the server's loop runs)."""

    def __init__(self, target: AzureTarget) -> None:
        self.target = target
        self._loop: asyncio.AbstractEventLoop | None = None
        self._session: aiohttp.ClientSession | None = None
        self._client: ContainerClient | None = None
        self._sas = ""
        self._sas_until = 0.0
        self.container_url = f"{target.endpoint}/{quote(target.container, safe='')}"

    def _ensure(self) -> tuple[aiohttp.ClientSession, ContainerClient]:
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._session is None or self._client is None:
            self._loop = loop
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_connect=30,
                                                                                sock_read=300))
            key = self.target.key
            credential: dict[str, str] | str | None = (
                {"account_name": self.target.account, "account_key": key} if key else self.target.sas)
            transport = AioHttpTransport(session=self._session, session_owner=False)
            self._client = ContainerClient(self.target.endpoint, self.target.container, credential=credential,
                                           transport=transport)
        return self._session, self._client

    @property
    def client(self) -> ContainerClient:
        return self._ensure()[1]

    async def aclose(self) -> None:
        """Close the connection pool of the current event loop."""
        if self._client is not None:
            await self._client.close()
        if self._session is not None:
            await self._session.close()
        self._client = self._session = self._loop = None

    def sas(self) -> str:
        """A container SAS (read, write) this process signed, renewed well before it expires."""
        if self.target.key is None:
            return self.target.sas or ""
        now = time.time()
        if now > self._sas_until:
            expiry = datetime.now(UTC) + SAS_LIFETIME
            self._sas = generate_container_sas(self.target.account, self.target.container,
                                               account_key=self.target.key, permission="rw", expiry=expiry,
                                               start=datetime.now(UTC) - timedelta(minutes=15))
            self._sas_until = now + SAS_LIFETIME.total_seconds() / 2
        return self._sas

    def blob_url(self, name: str, query: str = "") -> str:
        """The URL of blob ``name`` signed with the SAS (``query`` goes before it)."""
        sep = "&" if query else ""
        return f"{self.container_url}/{quote(name, safe='/')}?{query}{sep}{self.sas()}"

    async def put_block(self, name: str, block_id: str, data: bytes) -> None:
        """Put Block ``block_id`` (the raw id; sent base64-encoded, as the SDK does) of blob ``name``."""
        session, _ = self._ensure()
        wire_id = quote(base64.b64encode(block_id.encode()).decode(), safe="")
        url = self.blob_url(name, f"comp=block&blockid={wire_id}")
        headers = {"x-ms-version": API_VERSION, "Content-Length": str(len(data))}
        for attempt in range(RETRIES + 1):
            try:
                async with session.put(url, data=data, headers=headers) as response:
                    if response.status == 201:
                        return
                    body = await response.read()
                    if response.status < 500 or attempt == RETRIES:
                        raise from_status(response.status, response.headers.get("x-ms-error-code"),
                                          body[:300].decode(errors="replace"))
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                if attempt == RETRIES:
                    raise from_transport(exc) from exc
            await asyncio.sleep(0.2 * 2 ** attempt)

    async def get_range(self, name: str, start: int, end: int) -> AsyncIterator[bytes]:
        """Bytes ``[start, end)`` of blob ``name`` (``end > start``) from ONE streamed Get Blob, so that a
        read started before the blob was replaced finishes with the old bytes. Nothing when ``start`` is
        beyond the blob; ObjectNotFound when there is no blob."""
        session, _ = self._ensure()
        headers = {"x-ms-version": API_VERSION, "x-ms-range": f"bytes={start}-{end - 1}"}
        for attempt in range(RETRIES + 1):
            try:
                response = await session.get(self.blob_url(name), headers=headers)
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                if attempt == RETRIES:
                    raise from_transport(exc) from exc
                await asyncio.sleep(0.2 * 2 ** attempt)
                continue
            break
        try:
            if response.status == 416:
                return  # the range starts at or beyond the end of the blob
            if response.status not in (200, 206):
                body = await response.read()
                raise from_status(response.status, response.headers.get("x-ms-error-code"),
                                  body[:300].decode(errors="replace"))
            try:
                async for chunk in response.content.iter_chunked(READ_CHUNK):
                    yield chunk
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                raise from_transport(exc) from exc
        finally:
            response.release()
