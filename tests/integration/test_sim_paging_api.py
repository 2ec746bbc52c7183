"""GET /v3/enrollment-ids on the running server: HAL pages in both orders."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.simprocs import SimFcc, SimServer, start_fcc, start_server

SERIALS = [f"GW-{i:02d}" for i in range(7)]


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimServer]:
    """A server holding one record per serial, injected in order: the tests only read it."""
    where = tmp_path_factory.mktemp("paging")
    server = start_server(where / "server")
    fccs: list[SimFcc] = []
    try:
        for serial in SERIALS:
            fccs.append(start_fcc(where / f"fcc-{serial}"))
            reply = server.get("/v3/identity", serialNumber=serial, ip=fccs[-1].ip,
                               port=fccs[-1].port)
            assert reply.status_code == 200, reply.text
        yield server
    finally:
        for fcc in fccs:
            fcc.stop(grace=2.0)
        server.stop()


def walk(server: SimServer, **params: Any) -> list[dict[str, Any]]:
    pages = []
    href = "/v3/enrollment-ids"
    query: dict[str, Any] = params
    for _ in range(10):
        page = server.get(href, **query).json()
        pages.append(page)
        if "next" not in page["_links"]:
            return pages
        # Follow the server's own link, as a HAL client does.
        href, query = page["_links"]["next"]["href"], {}
    raise AssertionError("no end of pages")


@pytest.mark.parametrize(("order", "expected"), [("ASC", SERIALS), ("DESC", SERIALS[::-1])])
def test_three_pages_in_each_order(filled: SimServer, order: str, expected: list[str]) -> None:
    pages = walk(filled, limit=3, order=order)
    serials = [[r["serialNumber"] for r in p["results"]] for p in pages]
    assert serials == [expected[0:3], expected[3:6], expected[6:], []]
    assert [p["total_count"] for p in pages] == [3, 3, 1, 0]
    assert all(p["limit"] == 3 and p["order"] == order for p in pages)
    for page in pages[:-1]:
        assert page["_links"]["next"]["href"].endswith("last=" + page["results"][-1]["_id"])
    entry = pages[0]["results"][0]
    assert len(entry["_id"]) == 24
    assert "verificationKey" not in entry and entry["deployed"] is True
    assert len(entry["enrollmentID"]) == 97


def test_default_is_newest_first_up_to_50(filled: SimServer) -> None:
    page = filled.get("/v3/enrollment-ids").json()
    assert (page["limit"], page["order"], page["total_count"]) == (50, "DESC", 7)
    assert [r["serialNumber"] for r in page["results"]] == SERIALS[::-1]
    assert page["_links"]["self"]["href"] == "/v3/enrollment-ids?limit=50&order=DESC"


def test_limit_is_capped(server: SimServer) -> None:
    page = server.get("/v3/enrollment-ids", limit=5000).json()
    assert page["limit"] == 1000
    assert page["results"] == [] and "next" not in page["_links"]


@pytest.mark.parametrize("params", [{"order": "sideways"}, {"limit": "x"}, {"last": "nope"}])
def test_bad_parameters_are_400(server: SimServer, params: dict[str, str]) -> None:
    assert server.get("/v3/enrollment-ids", **params).status_code == 400
