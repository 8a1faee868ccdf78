"""Opening the S3 byte store: the ``--storage`` URL, the two clients, and the keys of the bucket layout.

``s3://BUCKET[/PREFIX]?endpoint=URL&region=REGION`` -- ``endpoint`` for any S3-compatible store (omitted:
AWS itself), ``region`` defaults to ``AWS_REGION`` / ``AWS_DEFAULT_REGION`` or ``us-east-1``. Credentials
come from the standard ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` (/ ``AWS_SESSION_TOKEN``)
variables, as both client libraries read them.

Two client libraries, chosen by measurement (bench/README.md, "Object-store client libraries"): obstore
for everything that moves bytes or is frequent (piece PUTs and streamed pieces, GETs, HEAD, LIST, DELETE,
CopyObject) -- it costs a third to a quarter of boto3's CPU per byte and per request --, and boto3, in
worker threads, for the per-part multipart calls obstore does not expose (CreateMultipartUpload,
UploadPart, UploadPartCopy, CompleteMultipartUpload, ListMultipartUploads, ListParts, Abort), which run
a few times per commit. Both address the same keys; obstore is given no prefix of its own.
"""

from __future__ import annotations

import atexit
import os
import re
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

import boto3
from botocore.config import Config
from obstore.store import S3Store as ObjectStore

from chunkd.core.errors import InvalidPath

if TYPE_CHECKING:
    from types_boto3_s3 import S3Client

__all__ = ["Keys", "S3Settings", "make_clients", "parse_url"]

_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")
_OPTIONS = {"endpoint", "region"}
_HANDLE = re.compile(r"^\d{20}-[0-9a-f]{16}(#\d+)?$")
_session: boto3.session.Session | None = None
_session_lock = threading.Lock()
_SETTLE = 0.05


def _let_obstore_threads_settle() -> None:
    """obstore's runtime threads wake the event loop from outside Python; one still doing so while the
    interpreter finalizes is killed by CPython 3.11 inside Rust frames, which aborts the process (SIGABRT
    right after a process's last request: 10 of 65 short runs here). Waiting a moment at exit, before
    finalization starts, lets such a thread finish (0 of 60 runs aborted)."""
    time.sleep(_SETTLE)


atexit.register(_let_obstore_threads_settle)


@dataclass(frozen=True)
class S3Settings:
    bucket: str
    prefix: str = ""  # "" or "some/path/" (always ends with "/")
    endpoint: str | None = None
    region: str = "us-east-1"
    retry_timeout: float = 20.0  # how long a failing request is retried before StorageUnavailable


def parse_url(url: str) -> S3Settings:
    """Parse ``s3://BUCKET[/PREFIX]?endpoint=...&region=...``; ValueError with the reason if malformed."""
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc:
        raise ValueError(f"expected s3://BUCKET[/PREFIX]?endpoint=URL&region=REGION, not {url!r}")
    bucket = parts.netloc
    if not _BUCKET.match(bucket):
        raise ValueError(f"{bucket!r} is not a valid S3 bucket name")
    options = dict(parse_qsl(parts.query, keep_blank_values=True))
    unknown = set(options) - _OPTIONS
    if unknown:
        raise ValueError(f"unknown S3 storage option(s) {', '.join(sorted(unknown))} (known: endpoint, region)")
    prefix = "/".join(s for s in parts.path.split("/") if s)
    if any(s in (".", "..") for s in prefix.split("/")):
        raise ValueError(f"bad prefix {parts.path!r}")
    endpoint = options.get("endpoint") or None
    if endpoint is not None and urlsplit(endpoint).scheme not in ("http", "https"):
        raise ValueError(f"the S3 endpoint must be an http:// or https:// URL, not {endpoint!r}")
    region = options.get("region") or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") \
        or "us-east-1"
    return S3Settings(bucket, f"{prefix}/" if prefix else "", endpoint, region)


def make_clients(s: S3Settings) -> tuple[ObjectStore, S3Client]:
    """The obstore store and the boto3 client for ``s``."""
    config: dict[str, Any] = {"region": s.region, "unsigned_payload": True}
    client_options: dict[str, Any] = {
        "connect_timeout": timedelta(seconds=5),
        # a GET streams a whole (possibly huge) object in one request: bound stalls, not the total
        "timeout": timedelta(hours=24),
        "read_timeout": timedelta(seconds=60),
    }
    if s.endpoint is not None:
        config["endpoint"] = s.endpoint
        client_options["allow_http"] = s.endpoint.startswith("http://")
    store = ObjectStore(s.bucket, config=config, client_options=client_options,  # type: ignore[arg-type]
                        retry_config={"max_retries": 5, "retry_timeout": timedelta(seconds=s.retry_timeout)})
    # lean: no default CRC32 on every request and no payload SHA-256 over TLS (bench/README.md)
    boto_config = Config(
        region_name=s.region, max_pool_connections=32, connect_timeout=5, read_timeout=120,
        retries={"max_attempts": 5, "mode": "standard"},
        request_checksum_calculation="when_required", response_checksum_validation="when_required",
        s3={"payload_signing_enabled": False, **({"addressing_style": "path"} if s.endpoint else {})},
    )
    with _session_lock:  # one session per process: it caches the service model (0.3 s to load)
        global _session
        if _session is None:
            _session = boto3.session.Session()
        client = _session.client("s3", endpoint_url=s.endpoint, config=boto_config)
    return store, client


class Keys:
    """Object keys of the bucket layout (see :mod:`chunkd.storage.s3`) under the store's prefix."""

    def __init__(self, prefix: str) -> None:
        self.root = prefix
        self.staging = f"{prefix}staging/"
        self.objects = f"{prefix}objects/"
        self.tmp = f"{prefix}tmp/"

    def ref_prefix(self, ref: str) -> str:
        if not ref or "/" in ref or ref.startswith(".") or any(ord(c) < 33 for c in ref) or len(ref) > 200:
            raise InvalidPath("bad staging ref")
        return f"{self.staging}{ref}/"

    def new_piece(self, ref: str, start: int) -> tuple[str, str]:
        """(key, handle) of a new piece object; the start in the name keeps a listing in byte order."""
        handle = f"{start:020d}-{secrets.token_hex(8)}"
        return self.ref_prefix(ref) + handle, handle

    def piece(self, ref: str, handle: str) -> str | None:
        """The key of a recorded piece's first segment, or None when the handle is not this store's."""
        if not _HANDLE.match(handle):
            return None
        return self.ref_prefix(ref) + handle.split("#", 1)[0]

    def namespace(self, namespace: str) -> str:
        segments = namespace.split("/")
        if not namespace or any(s in ("", ".", "..") or _bad(s) for s in segments):
            raise InvalidPath(f"bad namespace {namespace!r}")
        return f"{self.objects}{namespace}/"

    def object(self, namespace: str, key: str) -> str:
        """The object's key; ``key`` "" is the namespace's root folder (its prefix without the "/")."""
        base = self.namespace(namespace)
        if not key:
            return base[:-1]
        if key.startswith("/") or any(s in ("", ".", "..") or _bad(s) for s in key.split("/")):
            raise InvalidPath("bad key")
        return base + key

    def folder(self, namespace: str, prefix: str) -> str:
        """The listing prefix of folder ``prefix`` ("" = the namespace's root), ending with "/"."""
        return self.object(namespace, prefix) + "/" if prefix else self.namespace(namespace)

    def new_tmp(self) -> str:
        return f"{self.tmp}{secrets.token_hex(12)}"


def _bad(segment: str) -> bool:
    # the core's key rules refuse these already (chunkd.core.paths); S3 would accept them
    return any(ord(c) < 32 for c in segment)
