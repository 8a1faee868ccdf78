from __future__ import annotations

from collections.abc import AsyncIterator

import pytest


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def _azure_stores_closed() -> AsyncIterator[None]:
    yield
    from tests.azurite import close_opened

    await close_opened()


@pytest.fixture(autouse=True)
def _close_azure_stores(request: pytest.FixtureRequest) -> None:
    """Azure byte stores hold an aiohttp pool bound to the test's event loop: close them there."""
    if "anyio_backend" in request.fixturenames:
        request.getfixturevalue("_azure_stores_closed")
