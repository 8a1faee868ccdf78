"""Permission matrix (seeds 001/004 and the v1.0 pages): each permission x each operation x own/other's job.

Without ``.All`` a user reaches only jobs they created; application tokens only count ``.All`` roles.
The expected outcome of every cell is computed from the rules below, and every cell is driven against a
fresh job so operations do not disturb each other.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import httpx
import pytest

from tests.protocols.print.conftest import ALICE, BOB, PrintEnv, graph_error

R, RW, RA, RWA, C = "PrintJob.Read", "PrintJob.ReadWrite", "PrintJob.Read.All", "PrintJob.ReadWrite.All", \
    "PrintJob.Create"
READ = {R, RW, RA, RWA}
CREATE = {C, RW, RWA}
READWRITE = {RW, RWA}
ALL = {RA, RWA}
DATA = b"0123456789"
PROPS = {"documentName": "m.pdf", "contentType": "application/pdf", "size": len(DATA)}


@dataclass
class Cell:
    """A job prepared for one operation: its URLs and the owner's headers."""

    env: PrintEnv
    job_url: str
    doc_url: str
    owner: dict[str, str]


@dataclass(frozen=True)
class Op:
    name: str
    allowed: frozenset[str]
    setup: str  # "", "session" (owner opened a seeds' session) or "uploaded" (document complete)
    run: Callable[[Cell, dict[str, str]], httpx.Response]
    success: int
    own_only_even_with_all: bool = False  # DELETE of a session: its creator only
    mutates: bool = False  # a successful call changes the job: it gets a job of its own


def _seg(c: Cell, h: dict[str, str]) -> httpx.Response:
    return c.env.client.post(c.doc_url + "/uploadSession/$value", content=DATA[:4],
                             headers={**h, "Content-Range": f"bytes 0-3/{len(DATA)}"})


OPS = [
    Op("get job", frozenset(READ), "", lambda c, h: c.env.client.get(c.job_url, headers=h), 200),
    Op("list documents", frozenset(READ), "", lambda c, h: c.env.client.get(c.job_url + "/documents", headers=h), 200),
    Op("get document", frozenset(READ), "", lambda c, h: c.env.client.get(c.doc_url, headers=h), 200),
    Op("download $value", frozenset(READ), "uploaded",
       lambda c, h: c.env.client.get(c.doc_url + "/$value", headers=h), 200),
    Op("createUploadSession", frozenset(CREATE), "",
       lambda c, h: c.env.client.post(c.doc_url + "/createUploadSession", json={"properties": PROPS}, headers=h), 200,
       mutates=True),
    Op("PUT uploadSession", frozenset(READWRITE), "",
       lambda c, h: c.env.client.put(c.doc_url + "/uploadSession", json=PROPS, headers=h), 200, mutates=True),
    Op("GET uploadSession", frozenset(READ), "session",
       lambda c, h: c.env.client.get(c.doc_url + "/uploadSession", headers=h), 200),
    Op("DELETE uploadSession", frozenset(READWRITE), "session",
       lambda c, h: c.env.client.delete(c.doc_url + "/uploadSession", headers=h), 204, own_only_even_with_all=True,
       mutates=True),
    Op("POST uploadSession/$value", frozenset(READWRITE), "session", _seg, 202, mutates=True),
    Op("start", frozenset(CREATE), "uploaded", lambda c, h: c.env.client.post(c.job_url + "/start", headers=h), 200),
]

CALLERS = [("user", p) for p in (R, RW, RA, RWA, C)] + [("app", p) for p in (RA, RWA, R, RW, C)]


def _caller(env: PrintEnv, kind: str, perm: str) -> tuple[dict[str, str], dict[str, str]]:
    """(caller headers, headers of the same identity with full write rights, to create its own jobs)."""
    if kind == "user":
        return env.user(ALICE, perm), env.user(ALICE, RWA)
    return env.auth(app="matrix-app", roles=perm), env.auth(app="matrix-app", roles=RWA)


def _expected(op: Op, kind: str, perm: str, own: bool) -> int:
    effective = {perm} if kind == "user" else {perm} & ALL  # application permissions exist only as .All
    if not effective & op.allowed:
        return 403
    if not own and not effective & ALL:
        return 403
    if not own and op.own_only_even_with_all:
        return 403
    if not own and op.name == "POST uploadSession/$value":
        return 409  # reached, but the session belongs to the job's owner
    return op.success


Shared = dict[tuple[str, bool, str], Cell]


@pytest.fixture(scope="module")
def shared() -> Shared:
    """Jobs that calls which change nothing can share, per (caller kind, own, setup)."""
    return {}


def _cell(env: PrintEnv, owner: dict[str, str], setup: str) -> Cell:
    job, _, doc = env.new_job(owner)
    if setup == "session":
        assert env.open_seed_session(doc, owner, len(DATA)).status_code == 200
    elif setup == "uploaded":
        env.upload_all(doc, owner, DATA)
    return Cell(env, f"{env.jobs_url()}/{job}", doc, owner)


@pytest.mark.parametrize("kind,perm", CALLERS, ids=[f"{k}-{p}" for k, p in CALLERS])
def test_matrix(env: PrintEnv, shared: Shared, kind: str, perm: str) -> None:
    caller, caller_full = _caller(env, kind, perm)
    bob = env.user(BOB, RWA)
    failures = []
    for op in OPS:
        for own in (True, False):
            owner = caller_full if own else bob
            want = _expected(op, kind, perm, own)
            if op.mutates and want < 400:
                cell = _cell(env, owner, op.setup)
            else:
                key = (kind, own, op.setup)
                if key not in shared:
                    shared[key] = _cell(env, owner, op.setup)
                cell = shared[key]
            r = op.run(cell, caller)
            if r.status_code != want:
                failures.append(f"{op.name} own={own}: got {r.status_code} want {want}: {r.text[:200]}")
            elif want == 403:
                graph_error(r, 403, "accessDenied")
    assert not failures, "\n".join(failures)


def test_listing_shows_only_own_jobs_without_all(env: PrintEnv) -> None:
    alice_job, _, _ = env.new_job(env.user(ALICE, RW))
    bob_job, _, _ = env.new_job(env.user(BOB, RW))
    for perm, sees_bob in ((R, False), (RW, False), (RA, True), (RWA, True)):
        r = env.client.get(env.jobs_url(), headers=env.user(ALICE, perm))
        ids = {j["id"] for j in r.json()["value"]}
        assert alice_job in ids and (bob_job in ids) == sees_bob, perm
    graph_error(env.client.get(env.jobs_url(), headers=env.user(ALICE, C)), 403, "accessDenied")
    app_ids = {j["id"] for j in env.client.get(env.jobs_url(), headers=env.auth(roles=RA)).json()["value"]}
    assert {alice_job, bob_job} <= app_ids


def test_no_print_permission_at_all(env: PrintEnv) -> None:
    h = env.user(ALICE, "Files.Read")
    for r in (env.client.get("/v1.0/print/printers", headers=h),
              env.client.post(env.jobs_url(), json={}, headers=h)):
        graph_error(r, 403, "accessDenied")
