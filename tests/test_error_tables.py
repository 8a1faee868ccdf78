"""Every core error has an answer in every front end's table: nothing the core raises becomes an
unplanned 500 in any family (a take-over during Put Block used to answer 500 in Blob). The same for the
domain services' fault codes in the tables of the front ends that call them."""

from __future__ import annotations

import enum
import importlib
import pkgutil
from collections.abc import Mapping
from typing import Any

import pytest

import chunkd.core
from chunkd.core.errors import ChunkdError, StorageFull, StorageUnavailable
from chunkd.protocols import _blob_wire, _graph, admin, graph_print, ietf_wire, industry_data, servicefabric, tus_wire
from chunkd.protocols._errors import RETRY_AFTER_FULL, lookup
from chunkd.services import image_store, tus_records
from chunkd.services.blob_model import BlobFault, FaultCode
from chunkd.services.connectors import ConnectorFaultCode
from chunkd.services.print_records import PrintFault, PrintFaultCode

TABLES: dict[str, Mapping[type[ChunkdError], Any]] = {
    "servicefabric": servicefabric.ERRORS,
    "graph": _graph.ERRORS,
    "blob": _blob_wire.CORE_ERRORS,
    "tus": tus_wire.CORE_ERRORS,
    "ietf": {error: (status,) for error, status in ietf_wire.CORE_ERRORS.items()},
    "admin": admin.ERRORS,
}


def core_errors() -> list[type[ChunkdError]]:
    """Every ChunkdError subclass the core defines (all of chunkd.core imported first)."""
    for info in pkgutil.iter_modules(chunkd.core.__path__):
        importlib.import_module(f"chunkd.core.{info.name}")
    found: list[type[ChunkdError]] = []
    todo = [ChunkdError]
    while todo:
        for sub in todo.pop().__subclasses__():
            if sub.__module__.startswith("chunkd.core"):
                found.append(sub)
            todo.append(sub)
    return sorted(set(found), key=lambda c: c.__qualname__)


def test_the_core_has_the_errors_the_tables_must_cover() -> None:
    names = {c.__name__ for c in core_errors()}
    assert {"WriteInterrupted", "PiecesMissing", "StorageFull", "GuardFailed", "ClientGone", "RangeBusy"} <= names


@pytest.mark.parametrize("family", sorted(TABLES))
@pytest.mark.parametrize("error", core_errors(), ids=lambda c: c.__name__)
def test_every_core_error_has_an_answer(family: str, error: type[ChunkdError]) -> None:
    entry = lookup(TABLES[family], error)
    assert entry is not None, f"{family} has no answer for {error.__name__}"
    status = entry[0]
    assert 400 <= status < 500 or status in (503, 507), f"{family} answers {error.__name__} with {status}"


@pytest.mark.parametrize("code", list(FaultCode), ids=str)
def test_every_blob_fault_has_a_status(code: FaultCode) -> None:
    err = _blob_wire.as_blob_error(BlobFault(code, Reason="why"))
    assert err is not _blob_wire.INTERNAL and 400 <= err.status < 500
    assert (err.code, err.extra) == (code.value, {"Reason": "why"})


@pytest.mark.parametrize("code", list(ConnectorFaultCode), ids=str)
def test_every_connector_fault_has_a_graph_answer(code: ConnectorFaultCode) -> None:
    status, graph_code = industry_data.FAULTS[code]
    assert 400 <= status < 500 and graph_code


@pytest.mark.parametrize("code", list(PrintFaultCode), ids=str)
def test_every_print_fault_has_a_graph_answer(code: PrintFaultCode) -> None:
    err = graph_print.as_graph_error(PrintFault(code, "why"))
    assert 400 <= err.status < 500 and err.code and err.message == "why"


@pytest.mark.parametrize(("table", "codes"), [(tus_wire.FAULTS, tus_records.FaultCode),
                                              (servicefabric.FAULTS, image_store.FaultCode)],
                         ids=["tus", "servicefabric"])
def test_every_service_refusal_has_a_status(table: Mapping[Any, int], codes: type[enum.Enum]) -> None:
    """Services raise codes without statuses; each family's table must answer every code its service has."""
    assert set(table) == set(codes)
    assert all(400 <= status < 500 for status in table.values())


def test_a_full_disk_asks_every_family_to_come_back_later_not_in_a_second() -> None:
    """StorageFull is freed by an operator: each family's answer carries the long Retry-After (Blob lost the
    core error on its way to the response and said ``Retry-After: 1``)."""
    full = StorageFull("the disk is full")
    blob = _blob_wire.error_response(_blob_wire.as_blob_error(full), "rid")
    assert (blob.status_code, blob.headers["retry-after"]) == (503, RETRY_AFTER_FULL)
    tus = tus_wire.map_core_error(full)
    assert (tus.status, tus.headers["Retry-After"]) == (507, RETRY_AFTER_FULL)
    ietf = ietf_wire.map_core_error(full)
    assert (ietf.status, ietf.headers["Retry-After"]) == (507, RETRY_AFTER_FULL)
    graph = _graph.from_core(full)
    assert graph.status == 507 and graph.headers == {"Retry-After": RETRY_AFTER_FULL}
    busy = _blob_wire.error_response(_blob_wire.as_blob_error(StorageUnavailable("down")), "rid")
    assert busy.headers["retry-after"] == "1"


def test_the_admin_api_says_when_to_come_back_too() -> None:
    full = admin._error(*admin.ERRORS[StorageFull], "full", StorageFull("full"))
    assert (full.status_code, full.headers["retry-after"]) == (507, RETRY_AFTER_FULL)
    assert "retry-after" not in admin._error(404, "notFound", "no").headers
