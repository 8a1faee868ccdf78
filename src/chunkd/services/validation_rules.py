"""Validation rules of Industry Data's ``validate``: pluggable checks of an upload container's files.

A rule is an async callable taking a :class:`ValidationContext` and returning :class:`Problem`\\ s; errors
block the upload, warnings do not. The default rules (:data:`DEFAULT_RULES`) check what can honestly be checked
without the inbound flow's semantics: the container is not empty, every blob is committed, every file is a
UTF-8 CSV with a header row, and the files the connector's format requires are present.
"""

from __future__ import annotations

import codecs
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass

from chunkd.services.blob_model import Blob
from chunkd.services.connectors import Connector

ERROR, WARNING = "error", "warning"  # severities of a Problem


@dataclass(frozen=True)
class Problem:
    """One finding of a rule: an error blocks the upload, a warning does not. ``target`` names what it is
    about (a file name, the container id or a format code)."""

    severity: str  # ERROR | WARNING
    code: str
    message: str
    target: str = ""


@dataclass
class ValidationContext:
    """What a rule may look at: the connector, the committed blobs (sorted by name), the names that have
    uncommitted blocks, and a reader for a blob's bytes."""

    connector: Connector
    container_id: str
    blobs: list[Blob]
    uncommitted: set[str]
    read: Callable[[Blob], AsyncIterator[bytes]]

    @property
    def names(self) -> set[str]:
        return {b.name for b in self.blobs}


Rule = Callable[[ValidationContext], Awaitable[list[Problem]]]

# School Data Sync file sets (case-sensitive names). v2.1 is the default when a connector names no format.
SDS_V21_REQUIRED = ("orgs.csv", "users.csv", "roles.csv")
SDS_V21_OPTIONAL = ("academicSessions.csv", "classes.csv", "courses.csv", "demographics.csv", "enrollments.csv",
                    "relationships.csv", "userFlags.csv")
SDS_V1_REQUIRED = ("School.csv", "Section.csv", "Student.csv", "StudentEnrollment.csv", "Teacher.csv",
                   "TeacherRoster.csv")
FORMATS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "schooldatasyncv2rev1": (SDS_V21_REQUIRED, SDS_V21_OPTIONAL),
    "schooldatasyncv1": (SDS_V1_REQUIRED, ()),
}
DEFAULT_FORMAT = "schoolDataSyncV2Rev1"
MAX_HEADER_ROW = 1 << 20  # characters; SDS header rows are a few hundred. Bounds what validate holds in memory


def format_code(connector: Connector) -> str:
    """The connector's ``fileFormat.code``, or :data:`DEFAULT_FORMAT` when it names none."""
    code = connector.file_format.get("code") if connector.file_format is not None else None
    return str(code) if code else DEFAULT_FORMAT


async def container_not_empty(ctx: ValidationContext) -> list[Problem]:
    if ctx.blobs or ctx.uncommitted:
        return []
    return [Problem(ERROR, "EmptyContainer", "No files were uploaded to the upload session's container.",
                    ctx.container_id)]


async def all_committed(ctx: ValidationContext) -> list[Problem]:
    return [Problem(ERROR, "UncommittedFile", f"{n} has staged blocks that were never committed (Put Block List "
                    "missing); the upload did not finish.", n) for n in sorted(ctx.uncommitted - ctx.names)]


async def csv_files(ctx: ValidationContext) -> list[Problem]:
    out: list[Problem] = []
    for blob in ctx.blobs:
        name = blob.name
        if not name.lower().endswith(".csv"):
            out.append(Problem(WARNING, "UnexpectedFile", f"{name} is not a .csv file and is ignored.", name))
            continue
        out += await _check_csv(name, ctx.read(blob))
    return out


async def _check_csv(name: str, data: AsyncIterator[bytes]) -> list[Problem]:
    """UTF-8 throughout (a BOM is allowed) and a first line with non-empty, distinct column names, at most
    :data:`MAX_HEADER_ROW` characters long (only that much of the file is ever held)."""
    decoder = codecs.getincrementaldecoder("utf-8-sig")()
    header: str | None = None
    too_long = False
    pending = ""
    offset = 0
    piece = b""
    try:
        async for piece in data:
            text = decoder.decode(piece)
            offset += len(piece)
            if header is None:
                pending += text
                if "\n" in pending:
                    header = pending.split("\n", 1)[0]
                    pending = ""
                elif len(pending) > MAX_HEADER_ROW:
                    header, pending, too_long = "", "", True
        tail = decoder.decode(b"", final=True)
    except UnicodeDecodeError as exc:
        return [Problem(ERROR, "InvalidFileEncoding", f"{name} is not valid UTF-8 (near byte "
                        f"{offset - len(piece) + exc.start}).", name)]
    if header is None:
        header = (pending + tail).split("\n", 1)[0]
    if too_long or len(header) > MAX_HEADER_ROW:
        return [Problem(ERROR, "InvalidHeaderRow", f"{name} has a header row longer than {MAX_HEADER_ROW} "
                        "characters.", name)]
    columns = [c.strip().strip('"') for c in header.rstrip("\r").split(",")]
    if not header.strip():
        return [Problem(ERROR, "MissingHeaderRow", f"{name} is empty or has no header row.", name)]
    if any(not c for c in columns) or len(set(columns)) != len(columns):
        return [Problem(ERROR, "InvalidHeaderRow", f"{name} has empty or duplicate column names in its header "
                        "row.", name)]
    return []


async def required_files(ctx: ValidationContext) -> list[Problem]:
    code = format_code(ctx.connector)
    known = FORMATS.get(code.lower())
    if known is None:
        return [Problem(WARNING, "UnknownFileFormat", f"file format {code!r} is unknown to chunkd; required "
                        "files were not checked.", code)]
    required, optional = known
    names = ctx.names
    out = [Problem(ERROR, "RequiredFileNotFound", f"The required file {n} was not uploaded.", n)
           for n in required if n not in names]
    out += [Problem(WARNING, "OptionalFileNotFound", f"The optional file {n} was not uploaded.", n)
            for n in optional if n not in names]
    return out


DEFAULT_RULES: tuple[Rule, ...] = (container_not_empty, all_committed, csv_files, required_files)


async def run_rules(ctx: ValidationContext, rules: Sequence[Rule]) -> list[Problem]:
    problems: list[Problem] = []
    for rule in rules:
        problems += await rule(ctx)
    return problems
