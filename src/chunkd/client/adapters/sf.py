"""Service Fabric Image Store upload sessions.

Target URL: ``http://host:19080/ImageStore/dir/file.bin``. One GUID per file; chunks ``PUT
.../$/UploadChunk`` with ``Content-Range: bytes S-E/T`` in any order and in parallel; ``GetUploadSession``
gives ``ExpectedRanges``; ``CommitUploadSession`` publishes. A 0-byte file is one ``UploadFile`` PUT (the
runtime cannot commit an empty session). Works against a real cluster's HTTP gateway and against chunkd.
"""

from __future__ import annotations

import uuid
from urllib.parse import quote, urlsplit, urlunsplit

import httpx

from chunkd.client._flow import Flow, Range, expect, send
from chunkd.client.adapters.base import Adapter, MiB, Target
from chunkd.client.errors import ConfigError, SessionLost, VerificationError

API = "6.0"
RANGE_CONFLICT = (400,)  # with RANGE_NOT_SATISFIABLE: a chunk already received (resent after a lost 200)


def split_target(url: str) -> tuple[str, str]:
    """``http://h:p/prefix/ImageStore/a/b`` -> (``http://h:p/prefix``, ``a/b``)."""
    parts = urlsplit(url)
    marker = "/ImageStore"
    idx = parts.path.find(marker + "/")
    if idx < 0:
        raise ConfigError(f"{url} is not an image store file URL (http://host:port/ImageStore/dir/file)")
    base = urlunsplit((parts.scheme, parts.netloc, parts.path[:idx], "", ""))
    path = parts.path[idx + len(marker) + 1:].strip("/")
    if not path:
        raise ConfigError(f"{url} names no file under /ImageStore/")
    return base, path


def _fabric_code(response: httpx.Response) -> str:
    try:
        return str(response.json()["Error"]["Code"])
    except (ValueError, KeyError, TypeError):
        return ""


class ServiceFabricAdapter(Adapter):
    protocol = "sf"
    default_chunk_size = 8 * MiB
    max_parallel = 32

    def __init__(self, target: Target) -> None:
        super().__init__(target)
        self.base, self.path = split_target(target.url)
        self.session_id = ""
        self.confirmed = False  # the server has shown it knows the session (the first chunk creates it)

    def _url(self, action: str, content: bool = True) -> str:
        where = f"/ImageStore/{quote(self.path, safe='/')}" if content else "/ImageStore"
        return f"{self.base}{where}{'/$/' + action if action else ''}"

    def _request(self, method: str, action: str, *, content: bool = True, api: str = API, session: bool = True,
                 headers: dict[str, str] | None = None, body: bytes | None = None) -> httpx.Request:
        params = {"api-version": api}
        if session:
            params["session-id"] = self.session_id
        return httpx.Request(method, self._url(action, content), params=params,
                             headers={**self.target.auth_headers(), **(headers or {})}, content=body)

    def open(self, saved: dict[str, object] | None) -> Flow[list[Range]]:
        if self.size == 0:
            return []
        if saved and isinstance(saved.get("session_id"), str):
            self.session_id = str(saved["session_id"])
            self.confirmed = True
            try:
                return (yield from self.status())
            except SessionLost:
                pass
        self.session_id = str(uuid.uuid4())
        self.confirmed = False
        self.state = {"session_id": self.session_id}
        return [(0, self.size)]

    def status(self) -> Flow[list[Range]]:
        r = yield from send(self._request("GET", "GetUploadSession", content=False))
        if r.status_code in (204, 404):
            if not self.confirmed:
                return [(0, self.size)]  # no chunk has arrived yet, so the session does not exist yet
            raise SessionLost(f"the image store forgot upload session {self.session_id}")
        expect(r, (200,), "GetUploadSession")
        self.confirmed = True
        sessions = r.json().get("UploadSessions") or []
        if not sessions:
            raise SessionLost(f"the image store forgot upload session {self.session_id}")
        info = sessions[0]
        if int(info.get("FileSize", -1)) != self.size:
            raise SessionLost("the session was opened for a file of another size")
        return [(int(x["StartPosition"]), int(x["EndPosition"]) + 1) for x in info.get("ExpectedRanges") or []]

    def send_chunk(self, start: int, end: int, data: bytes) -> Flow[None]:
        request = self._request("PUT", "UploadChunk", body=data,
                                headers={"Content-Range": f"bytes {start}-{end - 1}/{self.size}"})
        r = yield from send(request)
        if r.status_code in (404, 410):
            raise SessionLost(f"the image store forgot upload session {self.session_id}")
        resync = RANGE_CONFLICT if _fabric_code(r) == "FABRIC_E_UPLOAD_SESSION_RANGE_NOT_SATISFIABLE" else ()
        expect(r, (200,), f"UploadChunk {start}-{end - 1}", resync=resync)
        self.confirmed = True

    def finish(self) -> Flow[str]:
        if self.size == 0:
            r = yield from send(self._request("PUT", "", session=False, body=b""))
            expect(r, (200,), "UploadFile")
        else:
            r = yield from send(self._request("POST", "CommitUploadSession", content=False))
            expect(r, (200,), "CommitUploadSession")
        r = yield from send(self._request("GET", "", api="6.2", session=False))
        expect(r, (200,), "GetImageStoreContent")
        files = r.json().get("StoreFiles") or []
        if files and int(files[0].get("FileSize", -1)) != self.size:
            raise VerificationError(f"the image store reports {files[0].get('FileSize')} bytes for {self.path}, "
                                    f"the local file has {self.size}")
        return self._url("")

    def cancel(self) -> Flow[None]:
        if self.session_id:
            r = yield from send(self._request("DELETE", "DeleteUploadSession", content=False))
            expect(r, (200, 404), "DeleteUploadSession")

    def download_request(self) -> httpx.Request | None:
        # chunkd's read extension; a real cluster has no download over HTTP
        return self._request("GET", "Content", session=False)
