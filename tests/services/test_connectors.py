"""Data connectors, upload sessions and validate as services: records, the engine's clock, faults."""

from __future__ import annotations

import pytest

from chunkd.core.body import Body
from chunkd.core.engine import Engine
from chunkd.core.principal import Principal
from chunkd.core.resources import Resource
from chunkd.services.blob_model import BlobProps, Conditions, ContainerState
from chunkd.services.blobs import BlobServices
from chunkd.services.connectors import (
    Connector,
    ConnectorFault,
    ConnectorFaultCode,
    ConnectorFields,
    ConnectorService,
)
from chunkd.services.envelope import Stored
from chunkd.services.validation_rules import Problem
from chunkd.services.validations import K_OPERATION, Operation, ValidationService
from tests.services.conftest import FakeClock

pytestmark = pytest.mark.anyio
ALICE = Principal(kind="user", tenant="t1", user="alice")
EVE = Principal(kind="user", tenant="t2", user="eve")


@pytest.fixture
def connectors(engine: Engine, blob: BlobServices) -> ConnectorService:
    return ConnectorService(engine, blob.containers, session_ttl=100, container_ttl=200)


async def body(data: bytes) -> Body:
    yield data


async def test_a_connector_round_trips_through_its_resource_document() -> None:
    c = Connector(id="k1", display_name="SDS", file_format={"code": "schoolDataSyncV1"}, source_system="sys",
                  container_id="c1", stored=Stored("t1", "user:t1:alice", 1.0, 2.0, 4))
    res = c.to_resource()
    assert res.data == {"displayName": "SDS", "fileFormat": {"code": "schoolDataSyncV1"}, "sourceSystem": "sys",
                        "containerId": "c1"}
    assert Connector.from_resource(res) == c
    assert Connector(id="k2", display_name="x").to_resource().data == {"displayName": "x"}


async def test_an_operation_round_trips_and_reads_problems_stored_in_the_older_shape() -> None:
    op = Operation(id="o1", connector_id="k1", container_id="c1", status="succeeded", created=1.0, last_action=2.0,
                   errors=(Problem("error", "RequiredFileNotFound", "m", "orgs.csv"),),
                   warnings=(Problem("warning", "UnexpectedFile", "w", "a.txt"),), validated_files=("users.csv",),
                   stored=Stored("t1", "user:t1:alice", 1.0, 2.0, 1))
    res = op.to_resource()
    assert (res.kind, res.parent) == (K_OPERATION, "k1")
    assert Operation.from_resource(res) == op
    older = Resource(kind=K_OPERATION, id="o2", tenant="t1", owner="o", created_at=1.0, modified_at=2.0, parent="k1",
                     data={**res.data, "errors": [{"code": "E", "message": "m", "target": "t", "details": [],
                                                   "innerError": None}]})
    assert Operation.from_resource(older).errors == (Problem("error", "E", "m", "t"),)


async def test_connectors_are_tenant_scoped_and_checked(connectors: ConnectorService) -> None:
    made = await connectors.create(ALICE, ConnectorFields(display_name="SDS"))
    assert made.tenant == "t1" and await connectors.get("t1", made.id) == made
    for tenant, cid in (("t2", made.id), ("t1", "nope")):
        with pytest.raises(ConnectorFault) as missing:
            await connectors.get(tenant, cid)
        assert missing.value.code is ConnectorFaultCode.NOT_FOUND
    assert await connectors.of_tenant("t2") == []
    for fields in (ConnectorFields(), ConnectorFields(display_name=" "), ConnectorFields(display_name="x" * 101)):
        with pytest.raises(ConnectorFault) as invalid:
            await connectors.create(ALICE, fields)
        assert invalid.value.code is ConnectorFaultCode.INVALID
    changed = await connectors.update("t1", made.id, ConnectorFields(file_format={"code": "x"}))
    assert (changed.display_name, changed.file_format) == ("SDS", {"code": "x"})


async def test_upload_sessions_switch_containers_on_the_engine_clock(connectors: ConnectorService,
                                                                     blob: BlobServices, clock: FakeClock) -> None:
    cid = (await connectors.create(ALICE, ConnectorFields(display_name="SDS"))).id
    first = await connectors.upload_session(ALICE, cid, reset=False)
    assert first.session_expires == int(clock.now) + 100
    clock.now += 99
    assert (await connectors.upload_session(ALICE, cid, reset=False)).id == first.id
    clock.now += 2  # the session (the SAS) ended: a new container, and the open old one goes
    second = await connectors.upload_session(ALICE, cid, reset=False)
    assert second.id != first.id and await blob.containers.get(first.id) is None
    third = await connectors.upload_session(ALICE, cid, reset=True)
    assert third.id != second.id and await blob.containers.get(second.id) is None
    assert (await connectors.get("t1", cid)).container_id == third.id
    with pytest.raises(ConnectorFault):
        await connectors.upload_session(EVE, cid, reset=False)


async def test_validate_seals_and_records_the_operation(engine: Engine, connectors: ConnectorService,
                                                        blob: BlobServices, clock: FakeClock) -> None:
    validations = ValidationService(engine, connectors, blob)
    cid = (await connectors.create(ALICE, ConnectorFields(display_name="SDS"))).id
    container = await connectors.upload_session(ALICE, cid, reset=False)
    for name, data in (("orgs.csv", b"sourcedId,name\n"), ("users.csv", b"a,a\n"), ("roles.csv", b"r\n")):
        await blob.blobs.put(container, name, body(data), BlobProps(), Conditions())
    clock.now += 5
    op = await validations.validate(ALICE, cid)
    assert (op.status, op.created, op.last_action) == ("succeeded", clock.now, clock.now)
    assert [(p.code, p.target) for p in op.errors] == [("InvalidHeaderRow", "users.csv")]
    assert op.validated_files == ("orgs.csv", "roles.csv")
    assert await validations.get("t1", op.id) == op
    sealed = await blob.containers.get(container.id)
    assert sealed is not None and sealed.state is ContainerState.VALIDATED
    with pytest.raises(ConnectorFault) as again:  # sealed: no open upload session any more
        await validations.validate(ALICE, cid)
    assert again.value.code is ConnectorFaultCode.NO_SESSION
    with pytest.raises(ConnectorFault) as other:
        await validations.get("t2", op.id)
    assert other.value.code is ConnectorFaultCode.NOT_FOUND
