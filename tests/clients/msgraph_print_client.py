"""Drives chunkd's Universal Print API with the real msgraph-beta-sdk + msgraph-core LargeFileUploadTask.

Runs in .venv-msgraph (scripts/clients/msgraph.sh), started as a subprocess by test_msgraph_print.py:

    python msgraph_print_client.py BASE_URL TOKEN PRINTER_ID SIZE CHUNK OUT_JSON

Creates a job, calls createUploadSession through the SDK, uploads SIZE random bytes with
LargeFileUploadTask, starts the job and writes what it saw (ids, the document's SHA-256, the uploadUrl's
requests' Authorization headers) to OUT_JSON for the test to check against the server.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import sys
from typing import Any
from urllib.parse import urlparse

import httpx
from kiota_abstractions.authentication import AccessTokenProvider, AllowedHostsValidator
from kiota_abstractions.authentication.base_bearer_token_authentication_provider import (
    BaseBearerTokenAuthenticationProvider,
)
from msgraph_beta import GraphRequestAdapter, GraphServiceClient
from msgraph_beta.generated.models.print_document import PrintDocument
from msgraph_beta.generated.models.print_document_upload_properties import PrintDocumentUploadProperties
from msgraph_beta.generated.models.print_job import PrintJob
from msgraph_beta.generated.models.print_job_configuration import PrintJobConfiguration
from msgraph_beta.generated.print.printers.item.jobs.item.documents.item.create_upload_session.create_upload_session_post_request_body import (  # noqa: E501
    CreateUploadSessionPostRequestBody,
)
from msgraph_core.tasks.large_file_upload import LargeFileUploadTask


class ChunkdTokenProvider(AccessTokenProvider):
    """Hands out the bearer for Graph API paths only, as azure-identity's provider does for Graph hosts:
    the uploadUrl (another path here, another host at Microsoft) gets no Authorization header."""

    def __init__(self, token: str, api_prefix: str) -> None:
        self.token, self.api_prefix = token, api_prefix
        self.validator = AllowedHostsValidator([])

    async def get_authorization_token(self, uri: str, additional_authentication_context: dict[str, Any] | None = None
                                      ) -> str:
        return self.token if urlparse(uri).path.startswith(self.api_prefix) else ""

    def get_allowed_hosts_validator(self) -> AllowedHostsValidator:
        return self.validator


async def main(base_url: str, token: str, printer_id: str, size: int, chunk: int, out_path: str) -> None:
    seen: list[dict[str, Any]] = []

    async def record(request: httpx.Request) -> None:
        seen.append({"method": request.method, "path": request.url.path,
                     "authorization": "authorization" in request.headers,
                     "content_range": request.headers.get("content-range")})

    http = httpx.AsyncClient(event_hooks={"request": [record]}, timeout=120)
    auth = BaseBearerTokenAuthenticationProvider(ChunkdTokenProvider(token, urlparse(base_url).path))
    from msgraph_core import GraphClientFactory

    adapter = GraphRequestAdapter(auth, client=GraphClientFactory.create_with_default_middleware(client=http))
    adapter.base_url = base_url
    client = GraphServiceClient(request_adapter=adapter)

    printer = client.print.printers.by_printer_id(printer_id)
    job = await printer.jobs.post(PrintJob(configuration=PrintJobConfiguration()))
    assert job is not None and job.id and job.documents, job
    doc_id = job.documents[0].id
    assert doc_id
    doc = printer.jobs.by_print_job_id(job.id).documents.by_print_document_id(doc_id)
    body = CreateUploadSessionPostRequestBody(properties=PrintDocumentUploadProperties(
        document_name="report.pdf", content_type="application/pdf", size=size))
    session = await doc.create_upload_session.post(body)
    assert session is not None and session.upload_url, session

    data = os.urandom(size)
    task = LargeFileUploadTask(session, adapter, io.BytesIO(data), parsable_factory=PrintDocument,
                               max_chunk_size=chunk)
    progress: list[Any] = []
    result = await task.upload(lambda r: progress.append(list(r)))
    item = result.item_response
    assert isinstance(item, PrintDocument), item
    status = await printer.jobs.by_print_job_id(job.id).start.post()
    assert status is not None
    again = await doc.get()
    assert again is not None
    with open(out_path, "w") as fh:
        json.dump({"job": job.id, "document": doc_id, "sha256": hashlib.sha256(data).hexdigest(),
                   "uploadUrl": session.upload_url, "result_id": item.id, "result_size": item.size,
                   "state": status.state.value if status.state else None, "doc_size": again.size,
                   "doc_content_type": again.content_type, "requests": seen, "progress": progress}, fh)
    await http.aclose()


if __name__ == "__main__":
    base, tok, pid, n, c, out = sys.argv[1:7]
    asyncio.run(main(base, tok, pid, int(n), int(c), out))
