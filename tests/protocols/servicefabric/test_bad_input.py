"""Bad input to the image store: a declarative table of requests against a real server process.

Every case must answer the runtime's FabricError code and HTTP status (never a 5xx) and change nothing:
the victim session keeps its ExpectedRanges, no session appears for a fresh id, and the files of the
data directory (published objects and staged files, and anything next to the data directory) are the same.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import httpx
import pytest

from tests.serverproc import ServerProcess

VICTIM = "4a2340e8-d8d8-497c-95fe-cdaa1052f33b"  # owned by the admin token, bytes 0-99 of 1000 received
FRESH = "9d1c7a52-6a0e-4b7b-8a57-0c2d3f4e5a6b"  # never used successfully
VPATH = "bad/victim.bin"
TOTAL = 1000
RNS = "FABRIC_E_UPLOAD_SESSION_RANGE_NOT_SATISFIABLE"
BAD_ID = "FABRIC_E_INVALID_UPLOAD_SESSION_ID"
ARG = "E_INVALIDARG"
DENIED = "E_ACCESSDENIED"
TOO_LONG = "FABRIC_E_PATH_TOO_LONG"


def chunk_url(path: str = VPATH, sid: str | None = VICTIM, api: str | None = "6.0", extra: str = "") -> str:
    query = "&".join(q for q in (f"api-version={api}" if api else "", f"session-id={sid}" if sid else "", extra) if q)
    return f"/ImageStore/{path}/$/UploadChunk?{query}"


def gen(size: int) -> Callable[[], Iterator[bytes]]:
    """A body without Content-Length (chunked transfer), so only the server can count it."""
    def body() -> Iterator[bytes]:
        yield b"x" * (size // 2)
        yield b"y" * (size - size // 2)
    return body


@dataclass(frozen=True)
class Case:
    name: str
    method: str
    url: str
    status: int
    code: str
    content_range: str | None = None
    body: bytes | Callable[[], Iterator[bytes]] = b""
    token: str = "admin"  # admin | read | other | none
    headers: dict[str, str] = field(default_factory=dict)


def chunk(name: str, content_range: str | None, body: bytes | Callable[[], Iterator[bytes]], status: int,
          code: str, url: str | None = None, token: str = "admin") -> Case:
    return Case(name, "PUT", url or chunk_url(), status, code, content_range, body, token)


R100 = "bytes 100-199/1000"
B100 = b"z" * 100

CASES = [
    # Content-Range
    chunk("range-missing", None, B100, 400, RNS),
    chunk("range-no-total", "bytes 100-199", B100, 400, RNS),
    chunk("range-star-total", "bytes 100-199/*", B100, 400, RNS),
    chunk("range-not-numbers", "bytes abc-199/1000", B100, 400, RNS),
    chunk("range-unsatisfied-form", "bytes */1000", B100, 400, RNS),
    chunk("range-negative", "bytes -5-199/1000", B100, 400, RNS),
    chunk("range-three-parts", "bytes 100-150-199/1000", B100, 400, RNS),
    chunk("range-end-equals-total", "bytes 900-1000/1000", b"z" * 101, 400, RNS),
    chunk("range-end-beyond-total", "bytes 900-5000/1000", b"z" * 4101, 400, RNS),
    chunk("range-start-after-end", "bytes 200-100/1000", B100, 400, RNS),
    chunk("range-over-uint64", f"bytes 0-99/{1 << 64}", B100, 400, RNS),
    # beyond Python's 4,300-digit int() limit (a ValueError inside the parser was a 500)
    chunk("range-5000-digit-end", f"bytes 0-{'9' * 5000}/1000", B100, 400, RNS),
    chunk("range-5000-digit-total", f"bytes 0-99/{'9' * 5000}", B100, 400, RNS),
    # body length against the range: declared by Content-Length, or only countable by the server
    chunk("body-shorter-content-length", R100, b"z" * 50, 400, ARG),
    chunk("body-longer-content-length", R100, b"z" * 150, 400, ARG),
    chunk("body-shorter-chunked", R100, gen(50), 400, ARG),
    chunk("body-longer-chunked", R100, gen(150), 400, ARG),
    chunk("body-empty", R100, b"", 400, ARG),
    # the session's identity
    chunk("another-total", "bytes 100-199/2000", B100, 400, ARG),
    chunk("another-path", R100, B100, 409, "FABRIC_E_UPLOAD_SESSION_ID_CONFLICT", url=chunk_url("bad/other.bin")),
    chunk("another-path-case", R100, B100, 409, "FABRIC_E_UPLOAD_SESSION_ID_CONFLICT", url=chunk_url("bad/VICTIM.bin")),
    # session-id: UploadChunk and GetUploadSession say INVALID_UPLOAD_SESSION_ID, Commit and Delete E_INVALIDARG
    chunk("chunk-sid-missing", R100, B100, 400, BAD_ID, url=chunk_url(sid=None)),
    chunk("chunk-sid-empty", R100, B100, 400, BAD_ID, url=chunk_url(sid="")),
    chunk("chunk-sid-not-guid", R100, B100, 400, BAD_ID, url=chunk_url(sid="not-a-guid")),
    chunk("chunk-sid-braces", R100, B100, 400, BAD_ID, url=chunk_url(sid="{" + VICTIM + "}")),
    chunk("chunk-sid-no-dashes", R100, B100, 400, BAD_ID, url=chunk_url(sid=VICTIM.replace("-", ""))),
    chunk("chunk-sid-zero", R100, B100, 400, BAD_ID, url=chunk_url(sid=str(uuid.UUID(int=0)))),
    # "$" matches before a final newline: the id was stored as "<guid>\n", another session than <guid>
    chunk("chunk-sid-trailing-newline", "bytes 0-99/100", B100, 400, BAD_ID,
          url=chunk_url("bad/fresh.bin", sid=FRESH + "%0a")),
    Case("get-sid-missing", "GET", "/ImageStore/$/GetUploadSession?api-version=6.0", 400, BAD_ID),
    Case("get-sid-malformed", "GET", "/ImageStore/$/GetUploadSession?api-version=6.0&session-id=xyz", 400, BAD_ID),
    Case("commit-sid-missing", "POST", "/ImageStore/$/CommitUploadSession?api-version=6.0", 400, ARG),
    Case("commit-sid-malformed", "POST", "/ImageStore/$/CommitUploadSession?api-version=6.0&session-id=12", 400, ARG),
    Case("commit-sid-zero", "POST",
         f"/ImageStore/$/CommitUploadSession?api-version=6.0&session-id={uuid.UUID(int=0)}", 400, ARG),
    Case("commit-incomplete", "POST", f"/ImageStore/$/CommitUploadSession?api-version=6.0&session-id={VICTIM}",
         400, ARG),
    Case("commit-unknown", "POST", f"/ImageStore/$/CommitUploadSession?api-version=6.0&session-id={FRESH}", 400, ARG),
    Case("delete-sid-missing", "DELETE", "/ImageStore/$/DeleteUploadSession?api-version=6.0", 400, ARG),
    Case("delete-sid-malformed", "DELETE", "/ImageStore/$/DeleteUploadSession?api-version=6.0&session-id=g", 400, ARG),
    # api-version and timeout
    chunk("api-missing", R100, B100, 400, ARG, url=chunk_url(api=None)),
    chunk("api-too-low", R100, B100, 400, ARG, url=chunk_url(api="5.9")),
    chunk("api-too-high", R100, B100, 400, ARG, url=chunk_url(api="9.0")),
    chunk("api-not-a-number", R100, B100, 400, ARG, url=chunk_url(api="latest")),
    chunk("api-nan", R100, B100, 400, ARG, url=chunk_url(api="nan")),
    chunk("api-empty", R100, B100, 400, ARG, url=chunk_url(api="")),
    chunk("api-trailing-newline", R100, B100, 400, ARG, url=chunk_url(api="6.0%0a")),
    Case("api-below-operation", "GET", "/ImageStore/$/FolderSize?api-version=6.4", 400, ARG),
    chunk("timeout-zero", R100, B100, 400, ARG, url=chunk_url(extra="timeout=0")),
    chunk("timeout-negative", R100, B100, 400, ARG, url=chunk_url(extra="timeout=-1")),
    chunk("timeout-too-big", R100, B100, 400, ARG, url=chunk_url(extra="timeout=4294967296")),
    chunk("timeout-not-a-number", R100, B100, 400, ARG, url=chunk_url(extra="timeout=soon")),
    chunk("timeout-arabic-indic-digit", R100, B100, 400, ARG, url=chunk_url(extra="timeout=%D9%A3")),  # int() takes it
    chunk("timeout-5000-digits", R100, B100, 400, ARG, url=chunk_url(extra="timeout=" + "9" * 5000)),
    Case("commit-timeout-zero", "POST",
         f"/ImageStore/$/CommitUploadSession?api-version=6.0&session-id={VICTIM}&timeout=0", 400, ARG),
    # paths that would leave the store root (a fresh session id: nothing may be created)
    *[chunk(f"path-{name}", "bytes 0-99/100", B100, 400, code, url=chunk_url(path, FRESH)) for name, path, code in [
        ("dotdot-encoded", "%2e%2e/%2e%2e/escape.bin", ARG),
        ("dotdot-in-segment", "..%2F..%2Fescape.bin", ARG),
        ("dotdot-backslash", "..%5C..%5Cescape.bin", ARG),
        ("dotdot-middle", "bad%2F..%2F..%2F..%2Fescape.bin", ARG),
        ("dot", "%2e/escape.bin", ARG),
        ("absolute-encoded", "%2Ftmp%2Fescape.bin", ARG),
        ("absolute-raw", "/tmp/escape.bin", ARG),
        ("absolute-backslash", "%5Ctmp%5Cescape.bin", ARG),
        ("unc", "%5C%5Chost%5Cshare%5Cescape.bin", ARG),
        ("drive", "C:%5Cescape.bin", ARG),
        ("drive-encoded", "C%3A%2Fescape.bin", ARG),
        ("nul", "bad%2Fescape%00.bin", ARG),
        ("control-char", "bad%2Fescape%01.bin", ARG),
        ("newline", "bad%2Fescape%0a.bin", ARG),  # matched no route: Starlette's plain-text 404
        ("carriage-return-newline", "bad%2Fescape%0d%0a.bin", ARG),
        ("too-long", "a%2F" * 600 + "escape.bin", TOO_LONG),
        ("segment-too-long", "b" * 300, TOO_LONG),
        ("empty", "", ARG),
    ]],
    Case("upload-file-dotdot", "PUT", "/ImageStore/%2e%2e/escape.bin?api-version=6.0", 400, ARG, body=b"x"),
    Case("upload-file-absolute", "PUT", "/ImageStore/%2Fescape.bin?api-version=6.0", 400, ARG, body=b"x"),
    Case("delete-content-dotdot", "DELETE", "/ImageStore/%2e%2e?api-version=6.0", 400, ARG),
    Case("delete-content-absolute", "DELETE", "/ImageStore/%2Ftmp?api-version=6.0", 400, ARG),
    Case("delete-content-reserved", "DELETE", "/ImageStore/Store?api-version=6.0", 400,
         "FABRIC_E_IMAGEBUILDER_RESERVED_DIRECTORY_ERROR"),
    Case("content-get-dotdot", "GET", "/ImageStore/%2e%2e%2Fetc?api-version=6.2", 400, ARG),
    Case("download-dotdot", "GET", "/ImageStore/%2e%2e%2Fchunkd.db/$/Content?api-version=6.0", 400, ARG),
    Case("copy-destination-dotdot", "POST", "/ImageStore/$/Copy?api-version=6.0", 400, ARG,
         body=b'{"RemoteSource": "bad/existing.txt", "RemoteDestination": "../escape.txt"}'),
    Case("copy-source-absolute", "POST", "/ImageStore/$/Copy?api-version=6.0", 400, ARG,
         body=b'{"RemoteSource": "/etc/hostname", "RemoteDestination": "bad/copy.txt"}'),
    Case("copy-bad-json", "POST", "/ImageStore/$/Copy?api-version=6.0", 400, ARG, body=b"{not json"),
    Case("copy-huge-body", "POST", "/ImageStore/$/Copy?api-version=6.0", 413, "FABRIC_E_VALUE_TOO_LARGE",
         body=b'{"RemoteSource": "' + b"a" * (2 << 20) + b'"}'),
    Case("copy-huge-chunked-body", "POST", "/ImageStore/$/Copy?api-version=6.0", 413, "FABRIC_E_VALUE_TOO_LARGE",
         body=gen(2 << 20)),
    Case("copy-deeply-nested-json", "POST", "/ImageStore/$/Copy?api-version=6.0", 400, ARG,
         body=b"[" * 100_000 + b"]" * 100_000),  # RecursionError, not ValueError, in json.loads
    Case("copy-nested-deeper-than-64", "POST", "/ImageStore/$/Copy?api-version=6.0", 400, ARG,
         body=b'{"RemoteSource": "bad/existing.txt", "RemoteDestination": "bad/copy.txt", "SkipFiles": '
              + b"[" * 70 + b"]" * 70 + b"}"),
    Case("copy-nan", "POST", "/ImageStore/$/Copy?api-version=6.0", 400, ARG,
         body=b'{"RemoteSource": "bad/existing.txt", "RemoteDestination": "bad/copy.txt", "CheckMarkFile": NaN}'),
    # the chunkd download extension
    Case("download-range-5000-digits", "GET", "/ImageStore/bad/existing.txt/$/Content?api-version=6.0", 400, ARG,
         headers={"Range": f"bytes={'9' * 5000}-"}),
    Case("download-suffix-range-5000-digits", "GET", "/ImageStore/bad/existing.txt/$/Content?api-version=6.0", 400,
         ARG, headers={"Range": f"bytes=-{'9' * 5000}"}),
    Case("download-range-unsatisfiable", "GET", "/ImageStore/bad/existing.txt/$/Content?api-version=6.0", 416, ARG,
         headers={"Range": "bytes=100-"}),  # was an empty body
    Case("copy-missing-fields", "POST", "/ImageStore/$/Copy?api-version=6.0", 400, ARG, body=b'{"RemoteSource": "a"}'),
    # authentication and authorisation
    chunk("no-token", R100, B100, 401, DENIED, token="none"),
    Case("no-token-read", "GET", f"/ImageStore/$/GetUploadSession?api-version=6.0&session-id={VICTIM}", 401, DENIED,
         token="none"),
    Case("bad-token", "GET", "/ImageStore?api-version=6.0", 401, DENIED, token="garbage"),
    chunk("read-role-chunk", R100, B100, 403, DENIED, token="read"),
    Case("read-role-commit", "POST", f"/ImageStore/$/CommitUploadSession?api-version=6.0&session-id={VICTIM}", 403,
         DENIED, token="read"),
    Case("read-role-delete-session", "DELETE",
         f"/ImageStore/$/DeleteUploadSession?api-version=6.0&session-id={VICTIM}", 403, DENIED, token="read"),
    Case("read-role-upload-file", "PUT", "/ImageStore/bad/existing.txt?api-version=6.0", 403, DENIED, body=b"evil",
         token="read"),
    Case("read-role-delete-content", "DELETE", "/ImageStore/bad?api-version=6.0", 403, DENIED, token="read"),
    Case("read-role-copy", "POST", "/ImageStore/$/Copy?api-version=6.0", 403, DENIED, token="read",
         body=b'{"RemoteSource": "bad/existing.txt", "RemoteDestination": "bad/copy.txt"}'),
    chunk("other-principal-chunk", R100, B100, 403, DENIED, token="other"),
    Case("other-principal-commit", "POST", f"/ImageStore/$/CommitUploadSession?api-version=6.0&session-id={VICTIM}",
         403, DENIED, token="other"),
    Case("other-principal-delete", "DELETE", f"/ImageStore/$/DeleteUploadSession?api-version=6.0&session-id={VICTIM}",
         403, DENIED, token="other"),
    # unknown operations
    Case("unknown-action", "GET", "/ImageStore/$/Nonsense?api-version=6.0", 400, ARG),
    Case("wrong-method", "POST", "/ImageStore/bad/existing.txt?api-version=6.0", 400, ARG),
    Case("method-no-route-takes", "PATCH", "/ImageStore/bad/existing.txt?api-version=6.0", 405, ARG),
    Case("cluster-version-wrong-method", "POST", "/$/GetClusterVersion", 405, ARG),
    Case("unknown-dollar-path", "GET", "/$/Nonsense", 404, ARG),
]


@dataclass
class Env:
    server: ServerProcess
    tokens: dict[str, str]

    def headers(self, token: str) -> dict[str, str]:
        if token == "none":
            return {}
        return {"Authorization": f"Bearer {self.tokens.get(token, token)}"}

    def snapshot(self) -> dict[str, str]:
        """Every file around the data directory (sha256 of published objects, names of staged files)."""
        root = self.server.data_dir.parent
        out: dict[str, str] = {}
        for p in sorted(root.rglob("*")):
            rel = p.relative_to(root).as_posix()
            if p.is_dir() or rel.startswith("data/chunkd.db") or rel.endswith(".log"):
                continue
            # staged bytes of unreceived ranges may be scribbled on by a rejected body; only their names count
            out[rel] = "staged" if "/staging/" in rel else hashlib.sha256(p.read_bytes()).hexdigest()
        return out


@pytest.fixture(scope="module")
def env(sf_server: ServerProcess) -> Env:
    tokens = {"admin": sf_server.token(), "read": sf_server.token("--roles", "ImageStore.Read"),
              "other": sf_server.token("--app", "someone-else")}
    e = Env(sf_server, tokens)
    with httpx.Client(base_url=sf_server.url, headers=e.headers("admin")) as c:
        r = c.put(chunk_url(), content=b"v" * 100, headers={"Content-Range": "bytes 0-99/1000"})
        assert r.status_code == 200, r.text
        assert c.put("/ImageStore/bad/existing.txt?api-version=6.0", content=b"original").status_code == 200
    return e


def victim_state(c: httpx.Client) -> object:
    r = c.get(f"/ImageStore/{VPATH}/$/GetUploadSession?api-version=6.0")
    assert r.status_code == 200, r.text
    return [(s["SessionId"], s["FileSize"], s["ExpectedRanges"]) for s in r.json()["UploadSessions"]]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_is_refused_and_changes_nothing(env: Env, case: Case) -> None:
    with httpx.Client(base_url=env.server.url, headers=env.headers("admin"), timeout=30) as admin:
        before_files, before_victim = env.snapshot(), victim_state(admin)
        assert before_victim == [(VICTIM, "1000", [{"StartPosition": "100", "EndPosition": "999"}])]
        headers = {**env.headers(case.token), **case.headers}
        if case.content_range is not None:
            headers["Content-Range"] = case.content_range
        body = case.body() if callable(case.body) else case.body
        with httpx.Client(base_url=env.server.url, timeout=30) as c:
            r = c.request(case.method, case.url, content=body, headers=headers)
        assert r.status_code < 500
        assert (r.status_code, r.json()["Error"]["Code"]) == (case.status, case.code), r.text
        assert r.headers["content-type"] == "application/json"
        assert r.json()["Error"]["Message"]

        assert victim_state(admin) == before_victim
        fresh = admin.get(f"/ImageStore/$/GetUploadSession?api-version=6.0&session-id={FRESH}")
        assert (fresh.status_code, fresh.json()["Error"]["Code"]) == (404, "FABRIC_E_FILE_NOT_FOUND")
        assert admin.get("/ImageStore/bad/existing.txt/$/Content?api-version=6.0").content == b"original"
        assert env.snapshot() == before_files


def test_unsatisfiable_download_names_the_size(env: Env) -> None:
    with httpx.Client(base_url=env.server.url, headers=env.headers("admin")) as c:
        r = c.get("/ImageStore/bad/existing.txt/$/Content?api-version=6.0", headers={"Range": "bytes=8-"})
    assert (r.status_code, r.headers["content-range"]) == (416, "bytes */8"), r.text


def test_refused_chunk_then_good_chunk_still_works(env: Env) -> None:
    """The refusals above left the session usable: the correct chunk after them is accepted."""
    with httpx.Client(base_url=env.server.url, headers=env.headers("admin")) as c:
        r = c.put(chunk_url(path="bad/later.bin", sid=str(uuid.uuid4())), content=b"q" * 10,
                  headers={"Content-Range": "bytes 0-9/10"})
        assert r.status_code == 200, r.text


def test_snapshot_sees_a_write(env: Env) -> None:
    """The 'nothing written' check can fail: a real upload changes the snapshot."""
    before = env.snapshot()
    with httpx.Client(base_url=env.server.url, headers=env.headers("admin")) as c:
        assert c.put("/ImageStore/bad/new.txt?api-version=6.0", content=b"new").status_code == 200
    new = set(env.snapshot()) - set(before)
    assert len(new) == 1 and new.pop().endswith("/imagestore/bad/new.txt")
