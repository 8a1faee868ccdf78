"""Drives chunkd's Industry Data API with the real msgraph-beta-sdk (runs in .venv-msgraph, started by
test_msgraph_sdk.py): ``python msgraph_client.py BASE_URL TOKEN OUT_JSON``.

Creates an azureDataLakeConnector with the SDK's model, fetches getUploadSession with a raw request (the SDK has
no builder for it), Put-Blobs two CSVs with httpx, calls the SDK's validate builder, finds the operation in the
server's answer and reads it with the SDK's operations builder (a fileValidateOperation). Writes what it saw.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import httpx
from kiota_abstractions.authentication import AccessTokenProvider, AllowedHostsValidator
from kiota_abstractions.authentication.base_bearer_token_authentication_provider import (
    BaseBearerTokenAuthenticationProvider,
)
from msgraph_beta import GraphRequestAdapter, GraphServiceClient
from msgraph_beta.generated.models.industry_data.azure_data_lake_connector import AzureDataLakeConnector
from msgraph_beta.generated.models.industry_data.file_validate_operation import FileValidateOperation


class Token(AccessTokenProvider):
    def __init__(self, token: str) -> None:
        self.token = token

    async def get_authorization_token(self, uri: str, additional_authentication_context: dict[str, Any] | None = None
                                      ) -> str:
        return self.token

    def get_allowed_hosts_validator(self) -> AllowedHostsValidator:
        return AllowedHostsValidator([])


async def main(base: str, token: str, out_path: str) -> None:
    locations: list[str] = []

    async def remember(response: httpx.Response) -> None:
        if response.request.url.path.endswith("validate") and "location" in response.headers:
            locations.append(response.headers["location"])

    http = httpx.AsyncClient(event_hooks={"response": [remember]}, timeout=60)
    from msgraph_core import GraphClientFactory

    adapter = GraphRequestAdapter(BaseBearerTokenAuthenticationProvider(Token(token)),
                                  client=GraphClientFactory.create_with_default_middleware(client=http))
    adapter.base_url = base + "/beta"
    client = GraphServiceClient(request_adapter=adapter)
    connectors = client.external.industry_data.data_connectors
    created = await connectors.post(AzureDataLakeConnector(display_name="SDK connector"))
    assert created is not None and created.id, created
    listed = await connectors.get()
    assert listed is not None and listed.value is not None
    headers = {"Authorization": f"Bearer {token}"}
    session = (await http.get(f"{base}/beta/external/industryData/dataConnectors/{created.id}/"
                              "microsoft.graph.industryData.azureDataLakeConnector/getUploadSession",
                              headers=headers)).json()
    url, _, sas = session["sessionUrl"].partition("?")
    for name in ("orgs.csv", "users.csv"):
        r = await http.put(f"{url}/{name}?{sas}", content=b"sourcedId,name\n1,x\n",
                           headers={"x-ms-blob-type": "BlockBlob", "x-ms-version": "2025-11-05"})
        assert r.status_code == 201, r.text
    await connectors.by_industry_data_connector_id(created.id).microsoft_graph_industry_data_validate.post()
    op_id = locations[-1].rsplit("/", 1)[1]
    op = await client.external.industry_data.operations.by_long_running_operation_id(op_id).get()
    assert isinstance(op, FileValidateOperation), op
    with open(out_path, "w") as fh:
        json.dump({"connector": created.id, "type": created.odata_type, "display_name": created.display_name,
                   "listed": [c.id for c in listed.value], "status": op.status.value if op.status else None,
                   "errors": [(e.code, e.target) for e in op.errors or []],
                   "warnings": [(w.code, w.target) for w in op.warnings or []]}, fh)
    await http.aclose()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3]))
