"""Printers, jobs and documents: registration (CLI and admin route), tenants, authentication errors."""

from __future__ import annotations

import httpx

from tests.protocols.print.conftest import ALICE, PrintEnv, add_printer, graph_error

RW = "PrintJob.ReadWrite"
OTHER_TENANT = "7e7e7e7e-0000-4000-8000-00000000beef"
CONSUMER_TENANT = "9188040d-6c67-4c5b-b112-36a304b66dad"


def test_cli_registers_printers_while_the_server_runs(env: PrintEnv) -> None:
    pid = add_printer(env.server.data_dir, "Label printer", "--content-type", "image/png")
    alice = env.user(ALICE, RW)
    printer = env.client.get(f"/beta/print/printers/{pid}", headers=alice)
    assert printer.status_code == 200, printer.text
    assert printer.json()["displayName"] == "Label printer"
    assert printer.json()["capabilities"]["contentTypes"] == ["image/png"]
    assert pid in [p["id"] for p in env.client.get("/v1.0/print/printers", headers=alice).json()["value"]]
    # its supported types decide which documents it takes
    _, _, doc = _job_on(env, pid, alice)
    graph_error(env.client.put(doc + "/uploadSession", headers=alice, json={
        "size": 5, "contentType": "application/pdf", "documentName": "x"}), 400, "invalidRequest")
    assert env.client.put(doc + "/uploadSession", headers=alice, json={
        "size": 5, "contentType": "image/png", "documentName": "x.png"}).status_code == 200


def _job_on(env: PrintEnv, pid: str, headers: dict[str, str]) -> tuple[str, str, str]:
    r = env.client.post(f"/v1.0/print/printers/{pid}/jobs", json={}, headers=headers)
    assert r.status_code == 201, r.text
    job = r.json()
    assert job["status"]["state"] == "paused" and job["status"]["details"] == ["uploadPending"]
    doc = job["documents"][0]
    assert doc == {**doc, "displayName": "", "contentType": "", "size": 0}
    return job["id"], doc["id"], f"/v1.0/print/printers/{pid}/jobs/{job['id']}/documents/{doc['id']}"


def test_admin_route_needs_printers_create(env: PrintEnv) -> None:
    body = {"displayName": "Lobby"}
    graph_error(env.client.post("/v1.0/print/printers", json=body, headers=env.auth(roles="PrintJob.ReadWrite.All")),
                403, "accessDenied")
    graph_error(env.client.post("/v1.0/print/printers", json={}, headers=env.auth(roles="Printers.Create")),
                400, "invalidRequest")
    r = env.client.post("/beta/print/printers", json={**body, "contentTypes": ["application/pdf"]},
                        headers=env.auth(roles="Printers.Create", tenant=OTHER_TENANT))
    assert r.status_code == 201 and r.json()["capabilities"]["contentTypes"] == ["application/pdf"]


def test_other_tenants_objects_are_invisible(env: PrintEnv) -> None:
    alice = env.user(ALICE, RW)
    job, _, doc = env.new_job(alice)
    outsider = env.auth(user=ALICE, scopes="PrintJob.ReadWrite.All", tenant=OTHER_TENANT)
    outsider_app = env.auth(roles="PrintJob.ReadWrite.All", tenant=OTHER_TENANT)
    for h in (outsider, outsider_app):
        graph_error(env.client.get(f"/v1.0/print/printers/{env.printer}", headers=h), 404, "itemNotFound")
        graph_error(env.client.get(f"{env.jobs_url()}/{job}", headers=h), 404, "itemNotFound")
        graph_error(env.client.post(env.jobs_url(), json={}, headers=h), 404, "itemNotFound")
        graph_error(env.client.get(doc + "/$value", headers=h), 404, "itemNotFound")
        graph_error(env.client.put(doc + "/uploadSession", headers=h, json={
            "size": 5, "contentType": "application/pdf", "documentName": "x"}), 404, "itemNotFound")
        ids = [p["id"] for p in env.client.get("/v1.0/print/printers", headers=h).json()["value"]]
        assert env.printer not in ids


def test_unknown_ids_are_item_not_found(env: PrintEnv) -> None:
    alice = env.user(ALICE, RW)
    job, _, _ = env.new_job(alice)
    for path in ("/v1.0/print/printers/nope", f"{env.jobs_url()}/nope", f"{env.jobs_url()}/{job}/documents/nope",
                 f"/v1.0/print/printers/nope/jobs/{job}"):
        graph_error(env.client.get(path, headers=alice), 404, "itemNotFound")


def test_authentication_errors_and_request_ids(env: PrintEnv) -> None:
    url = f"/v1.0/print/printers/{env.printer}/jobs"
    r = env.client.get(url, headers={"client-request-id": "my-id-1"})
    err = graph_error(r, 401, "InvalidAuthenticationToken")
    assert r.headers["client-request-id"] == "my-id-1" and err["innerError"]["client-request-id"] == "my-id-1"
    graph_error(env.client.get(url, headers={"Authorization": "Bearer nonsense"}), 401, "InvalidAuthenticationToken")
    graph_error(env.client.get(url, headers={"Authorization": "Basic dXNlcjpwYXNz"}), 401,
                "InvalidAuthenticationToken")
    personal = env.auth(user=ALICE, scopes="PrintJob.ReadWrite.All", tenant=CONSUMER_TENANT)
    graph_error(env.client.get(url, headers=personal), 403, "accessDenied")
    ok = env.client.get(url, headers=env.user(ALICE, RW))
    assert ok.status_code == 200 and ok.headers["request-id"] and ok.headers["request-id"] != r.headers["request-id"]
    graph_error(httpx.get(env.server.url + "/v1.0/print/bogus", headers=env.user(ALICE, RW)), 400, "invalidRequest")
