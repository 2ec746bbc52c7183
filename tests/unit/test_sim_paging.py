"""Records in SQLite and the paging of /v3/enrollment-ids."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pep_agent.sim import records
from pep_agent.sim.query import identity_query
from pep_agent.sim.records import PageSpec, hal_page, page_spec


@pytest.fixture
def store(tmp_path: Path) -> Iterator[records.Records]:
    db = records.Records(tmp_path / "r.sqlite")
    yield db
    db.close()


def deploy(store: records.Records, serial: str) -> str:
    record_id, _ = store.create(identity_query({"serialNumber": serial, "verificationKey": "k"}))
    store.deploy(record_id, f"A-{serial}")
    return record_id


def test_spec_defaults() -> None:
    assert page_spec({}) == PageSpec(50, "DESC", None)


def test_spec_caps_limit_and_normalises_order_and_last() -> None:
    spec = page_spec({"limit": "5000", "order": "asc", "last": "0123456789ABCDEF01234567"})
    assert spec == PageSpec(1000, "ASC", "0123456789abcdef01234567")


@pytest.mark.parametrize("query", [
    {"limit": "0"}, {"limit": "-1"}, {"limit": "ten"}, {"limit": "2.5"},
    {"order": "UP"}, {"last": "123"}, {"last": "zz3456789abcdef012345678"},
])
def test_spec_rejects_bad_values(query: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        page_spec(query)


def test_hal_document_of_a_page() -> None:
    spec = PageSpec(2, "ASC", "0" * 24)
    page = hal_page(spec, [{"_id": "a" * 24}, {"_id": "b" * 24}])
    assert page["_links"]["self"]["href"] == f"/v3/enrollment-ids?limit=2&order=ASC&last={'0' * 24}"
    assert page["_links"]["next"]["href"] == f"/v3/enrollment-ids?limit=2&order=ASC&last={'b' * 24}"
    assert (page["total_count"], page["limit"], page["order"]) == (2, 2, "ASC")


def test_empty_page_has_no_next() -> None:
    page = hal_page(PageSpec(50, "DESC", None), [])
    assert "next" not in page["_links"]
    assert page["total_count"] == 0 and page["results"] == []


def walk(store: records.Records, limit: int, order: str) -> list[list[str]]:
    pages, last = [], None
    for _ in range(20):
        results = store.page(PageSpec(limit, order, last))
        pages.append([r["serialNumber"] for r in results])
        if not results:
            return pages
        last = results[-1]["_id"]
    raise AssertionError("paging did not end")


def test_paging_both_orders_across_pages(store: records.Records) -> None:
    serials = [f"GW-{i}" for i in range(7)]
    for serial in serials:
        deploy(store, serial)
    assert walk(store, 3, "ASC") == [serials[0:3], serials[3:6], serials[6:], []]
    back = serials[::-1]
    assert walk(store, 3, "DESC") == [back[0:3], back[3:6], back[6:], []]


def test_ids_sort_by_creation_and_survive_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite"
    first = records.Records(path)
    ids = [deploy(first, f"S{i}") for i in range(3)]
    first.close()
    second = records.Records(path)
    ids.append(deploy(second, "S3"))
    assert ids == sorted(ids) and len(set(ids)) == 4
    assert all(len(i) == 24 and int(i, 16) >= 0 for i in ids)
    assert [r["_id"] for r in second.page(PageSpec(10, "ASC", None))] == ids
    second.close()


def test_results_carry_id_and_public_fields_only(store: records.Records) -> None:
    deploy(store, "GW-1")
    (result,) = store.page(PageSpec(10, "DESC", None))
    assert set(result) == {"_id", *records.PUBLIC_FIELDS}
    assert "verificationKey" not in result
    assert result["deployed"] is True
    assert result["cloudAddress"] == result["gatewayServicesAddress"]


def test_undeployed_records_are_invisible_but_hold_the_serial(store: records.Records) -> None:
    record_id, _ = store.create(identity_query({"serialNumber": "GW-1"}))
    assert store.page(PageSpec(10, "DESC", None)) == []
    assert store.enrollment_id("GW-1") is None
    with pytest.raises(records.DuplicateSerial):
        store.create(identity_query({"serialNumber": "GW-1"}))
    store.delete(record_id)
    deploy(store, "GW-1")
    assert store.enrollment_id("GW-1") == "A-GW-1"
    assert store.verification_key("GW-1") == "k"


def test_records_file_is_private(tmp_path: Path) -> None:
    db = records.Records(tmp_path / "r.sqlite")
    db.close()
    assert (tmp_path / "r.sqlite").stat().st_mode & 0o077 == 0
