"""Which operation an image-store path names (docs/servicefabric.md, contentPath): the literal segment ``$``
starts the action, a ``$`` inside a name does not, the bare ``/ImageStore/$/...`` forms address the root,
a leading separator stays absolute, and a path that does not end where the action ends names no operation.
One real server process (the package's)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.serverproc import ServerProcess

API = "api-version=6.0"


@pytest.fixture(scope="module")
def c(sf_server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sf_server.url, headers={"Authorization": f"Bearer {sf_server.token()}"},
                      timeout=30) as client:
        assert client.put(f"/ImageStore/routes/one.txt?{API}", content=b"one").status_code == 200
        yield client


def error(r: httpx.Response) -> tuple[int, str]:
    return r.status_code, r.json()["Error"]["Code"]


def test_dollar_inside_names_is_part_of_the_name(c: httpx.Client) -> None:
    assert c.put(f"/ImageStore/routes/a$b/$x/y$?{API}", content=b"dollars").status_code == 200
    assert c.get(f"/ImageStore/routes/a$b/$x/y$/$/Content?{API}").content == b"dollars"
    listing = c.get("/ImageStore/routes/a$b?api-version=6.2").json()
    assert listing["StoreFolders"] == [{"StoreRelativePath": "routes\\a$b\\$x", "FileCount": "1"}]


def test_only_the_first_dollar_segment_starts_the_action(c: httpx.Client) -> None:
    # not the file "routes/$/one.txt" nor an action "one.txt/$/Content" of "routes"
    assert error(c.get(f"/ImageStore/routes/$/one.txt/$/Content?{API}")) == (400, "E_INVALIDARG")
    assert error(c.put(f"/ImageStore/routes/$/x.txt?{API}", content=b"x")) == (400, "E_INVALIDARG")
    assert error(c.get(f"/ImageStore/routes/$/?{API}")) == (400, "E_INVALIDARG")  # an empty action


def test_bare_and_doubled_separator_forms_address_the_root(c: httpx.Client) -> None:
    for prefix in ("/ImageStore", "/ImageStore/"):
        size = c.get(f"{prefix}/$/FolderSize?api-version=6.5")
        assert size.status_code == 200 and size.json()["StoreRelativePath"] == "", prefix
        root = c.get(f"{prefix}?{API}")
        assert "routes" in [f["StoreRelativePath"] for f in root.json()["StoreFolders"]], prefix
    # an empty contentPath names no file: not an upload into the root
    r = c.put(f"/ImageStore/$/UploadChunk?{API}&session-id=0c8a8b1e-8f1e-4a52-9d35-3f0e4a1b2c3d", content=b"x",
              headers={"Content-Range": "bytes 0-0/1"})
    assert error(r) == (400, "E_INVALIDARG")


def test_a_leading_separator_stays_absolute(c: httpx.Client) -> None:
    assert error(c.get(f"/ImageStore//routes/one.txt/$/Content?{API}")) == (400, "E_INVALIDARG")
    assert error(c.get(f"/ImageStore/%5Croutes/one.txt?{API}")) == (400, "E_INVALIDARG")
    assert c.get(f"/ImageStore/routes%5Cone.txt/$/Content?{API}").content == b"one"  # a backslash inside


def test_the_path_ends_where_the_action_ends(c: httpx.Client) -> None:
    for suffix in ("Content%0A", "Content%0D%0A", "Content/", "Content/x", "content", "Content%00"):
        r = c.get(f"/ImageStore/routes/one.txt/$/{suffix}?{API}")
        assert error(r) == (400, "E_INVALIDARG"), suffix


def test_head_is_get_except_for_content(c: httpx.Client) -> None:
    listing = c.head(f"/ImageStore/routes?{API}")
    assert listing.status_code == 200 and listing.headers["content-type"] == "application/json"
    assert listing.content == b""
    download = c.head(f"/ImageStore/routes/one.txt/$/Content?{API}")
    assert download.status_code == 200 and download.headers["content-length"] == "3"
    assert c.head(f"/ImageStore/$/Copy?{API}").status_code == 400  # no GET Copy, so no HEAD either


def test_methods_outside_the_api_are_405_with_allow(c: httpx.Client) -> None:
    for method, path in (("PATCH", "/ImageStore/routes/one.txt"), ("OPTIONS", "/ImageStore/$/Copy"),
                         ("TRACE", "/ImageStore")):
        r = c.request(method, f"{path}?{API}")
        assert error(r) == (405, "E_INVALIDARG"), method
        assert {"GET", "PUT", "POST", "DELETE"} <= set(r.headers["allow"].replace(" ", "").split(","))


def test_the_bare_root_is_an_operation_like_any_path(sf_server: ServerProcess, c: httpx.Client) -> None:
    """PUT and DELETE on the root are refused for the path, after the same checks as any other path."""
    assert error(httpx.put(f"{sf_server.url}/ImageStore?{API}", content=b"x")) == (401, "E_ACCESSDENIED")
    for method in ("PUT", "DELETE"):
        r = c.request(method, f"/ImageStore?{API}", content=b"x" if method == "PUT" else None)
        assert error(r) == (400, "E_INVALIDARG") and "empty" in r.json()["Error"]["Message"], method
