"""The enrollment-id export: jq @csv rules, paging, and the files written."""

from __future__ import annotations

import json
import shutil
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest

from pep_agent import inventory
from pep_agent.errors import BadResponseError, PepError, UsageError
from pep_agent.exit_codes import Exit

# The reference CLI's filter, verbatim in meaning: header array, then one array per record.
JQ_FILTER = (
    '["enrollmentID","serialNumber","gatewayServicesAddress","apiAddress","hardwareVersion",'
    '"radioConfig","ledConfig","category","deployed","createdAt"], (.results[] | '
    "[.enrollmentID, .serialNumber,.gatewayServicesAddress,.apiAddress,.hardwareVersion,"
    ".radioConfig,.ledConfig,.category,.deployed,.createdAt]) | @csv"
)

RECORDS: list[dict[str, Any]] = [
    {
        "enrollmentID": "A-35:0d:c3:2b:40:8a",
        "serialNumber": "LINE 7/GW+001,rev=2",
        "gatewayServicesAddress": "https://gateways.us-east-1.mbedcloud.com",
        "apiAddress": "https://api.us-east-1.mbedcloud.com",
        "hardwareVersion": "izuma-edge-gateway",
        "radioConfig": "00",
        "ledConfig": "01",
        "category": "production",
        "deployed": True,
        "createdAt": 1700000000123,
        "_id": "65f0c0ffee",
    },
    {
        # Quotes, a comma, non-ASCII, a field missing and a null: the awkward cases.
        "enrollmentID": "B-00",
        "serialNumber": 'say "hi", O\'Brien',
        "gatewayServicesAddress": None,
        "apiAddress": "https://api.example",
        "hardwareVersion": "Größe",
        "radioConfig": "",
        "category": "developer",
        "deployed": False,
        "createdAt": 1.0,
    },
]

# Written by hand from jq's @csv rules (see the module docstring of pep_agent.inventory).
EXPECTED_CSV = (
    '"enrollmentID","serialNumber","gatewayServicesAddress","apiAddress","hardwareVersion",'
    '"radioConfig","ledConfig","category","deployed","createdAt"\n'
    '"A-35:0d:c3:2b:40:8a","LINE 7/GW+001,rev=2","https://gateways.us-east-1.mbedcloud.com",'
    '"https://api.us-east-1.mbedcloud.com","izuma-edge-gateway","00","01","production",'
    "true,1700000000123\n"
    '"B-00","say ""hi"", O\'Brien",,"https://api.example","Größe","",,"developer",false,1\n'
).encode()


def test_csv_fields_follow_jq() -> None:
    assert inventory.csv_field("plain") == '"plain"'
    assert inventory.csv_field('a "b"') == '"a ""b"""'
    assert inventory.csv_field("") == '""'
    assert inventory.csv_field(None) == ""
    assert inventory.csv_field(True) == "true"
    assert inventory.csv_field(False) == "false"
    assert inventory.csv_field(1700000000123) == "1700000000123"
    assert inventory.csv_field(-3) == "-3"
    assert inventory.csv_field(2.0) == "2"
    assert inventory.csv_field(2.5) == "2.5"
    assert inventory.csv_field(float("nan")) == ""


@pytest.mark.parametrize("value", [["x"], {"k": "secret-ish"}])
def test_csv_refuses_nested_values_without_echoing_them(value: Any) -> None:
    with pytest.raises(BadResponseError) as info:
        inventory.csv_field(value, "serialNumber")
    assert info.value.code == Exit.BAD_RESPONSE
    assert "serialNumber" in info.value.message
    assert "secret-ish" not in info.value.message


def test_csv_export_bytes() -> None:
    assert inventory.csv_export(RECORDS) == EXPECTED_CSV
    assert inventory.csv_export([]) == EXPECTED_CSV.split(b"\n")[0] + b"\n"


@pytest.mark.spawns
@pytest.mark.skipif(shutil.which("jq") is None, reason="jq is not installed")
def test_csv_export_matches_real_jq(tmp_path: Path) -> None:
    page = {"results": RECORDS, "total_count": 2}
    src = tmp_path / "page.json"
    src.write_text(json.dumps(page), encoding="utf-8")
    jq = subprocess.run(["jq", "-r", JQ_FILTER, str(src)], capture_output=True, check=True)
    assert inventory.csv_export(RECORDS) == jq.stdout
    assert jq.stdout == EXPECTED_CSV


def page(ids: list[int], nxt: str | None) -> dict[str, Any]:
    links: dict[str, Any] = {"self": {"href": f"/v3/enrollment-ids?page-of-{ids}"}}
    if nxt:
        links["next"] = {"href": nxt}
    return {"_links": links, "results": [{"enrollmentID": f"E{i}", "_id": str(i)} for i in ids],
            "total_count": len(ids), "limit": 2, "order": "ASC"}


def test_collect_follows_next_until_an_empty_page() -> None:
    server = {
        "p2": page([3, 4], "p3"),
        "p3": page([5], "p4"),
        "p4": page([], None),
    }
    followed: list[str] = []
    progress: list[tuple[int, int]] = []

    def follow(href: str) -> dict[str, Any]:
        followed.append(href)
        return server[href]

    pages = inventory.collect(lambda: page([1, 2], "p2"), follow, every_page=True,
                              on_page=lambda p, r: progress.append((p, r)))
    assert followed == ["p2", "p3", "p4"]
    assert progress == [(1, 2), (2, 4), (3, 5), (4, 5)]
    doc = inventory.combine(pages)
    assert [r["enrollmentID"] for r in doc["results"]] == ["E1", "E2", "E3", "E4", "E5"]
    assert doc["total_count"] == 5
    assert doc["order"] == "ASC" and doc["limit"] == 2
    assert doc["_links"] == {"self": {"href": "/v3/enrollment-ids?page-of-[1, 2]"}}


def test_collect_one_page_unless_asked() -> None:
    def follow(href: str) -> dict[str, Any]:
        raise AssertionError("must not follow")

    first = page([1, 2], "p2")
    pages = inventory.collect(lambda: first, follow, every_page=False)
    assert inventory.combine(pages) is first


def test_collect_stops_without_next_link() -> None:
    pages = inventory.collect(lambda: page([1], None), lambda h: page([9], None),
                              every_page=True)
    assert len(pages) == 1


def test_collect_refuses_a_loop_and_is_bounded() -> None:
    with pytest.raises(BadResponseError, match="already read"):
        inventory.collect(lambda: page([1], "p2"), lambda h: page([2], "p2"), every_page=True)
    counter = iter(range(2, 100))
    with pytest.raises(BadResponseError, match="more than 5 pages"):
        inventory.collect(lambda: page([1], "p2"),
                          lambda h: page([n := next(counter)], f"p{n + 1}"),
                          every_page=True, max_pages=5)


@pytest.mark.parametrize("bad", [{}, {"results": "x"}, {"results": [1, 2]}])
def test_malformed_pages(bad: dict[str, Any]) -> None:
    with pytest.raises(BadResponseError):
        inventory.collect(lambda: bad, lambda h: bad, every_page=True)


def test_next_href() -> None:
    assert inventory.next_href(page([1], "p2")) == "p2"
    assert inventory.next_href({"_links": {"next": {}}}) is None
    assert inventory.next_href({"_links": "x"}) is None
    assert inventory.next_href({}) is None


def test_option_checks() -> None:
    assert inventory.check_limit(1) == 1 and inventory.check_limit(1000) == 1000
    for bad in (0, 1001, -5):
        with pytest.raises(UsageError):
            inventory.check_limit(bad)
    assert inventory.check_order("asc") == "ASC"
    with pytest.raises(UsageError):
        inventory.check_order("up")


def test_export_files(tmp_path: Path) -> None:
    name = str(tmp_path / "out" / "gateways")
    doc = {"results": RECORDS, "total_count": 2}
    written = inventory.write_exports(name, doc, csv=True)
    assert written == [tmp_path / "out/gateways.json", tmp_path / "out/gateways.csv"]
    assert json.loads(written[0].read_text(encoding="utf-8")) == doc
    assert written[1].read_bytes() == EXPECTED_CSV
    assert stat.S_IMODE(written[1].stat().st_mode) == 0o644
    only_json = inventory.write_exports(str(tmp_path / "j"), doc, csv=False)
    assert only_json == [tmp_path / "j.json"]
    assert not (tmp_path / "j.csv").exists()


def test_export_names_keep_dots() -> None:
    # The reference appends the extension to whatever NAME is, dots included.
    assert inventory.export_paths("batch.2024", csv=True) == [
        Path("batch.2024.json"), Path("batch.2024.csv")]
    with pytest.raises(UsageError):
        inventory.export_paths("", csv=False)


def test_nothing_is_written_when_the_csv_cannot_be_made(tmp_path: Path) -> None:
    doc = {"results": [{"serialNumber": ["nested"]}]}
    with pytest.raises(BadResponseError):
        inventory.write_exports(str(tmp_path / "x"), doc, csv=True)
    assert list(tmp_path.iterdir()) == []


def test_unwritable_export_is_exit_29_with_a_local_hint(tmp_path: Path) -> None:
    (tmp_path / "taken.json").mkdir()  # a directory where the file should go
    with pytest.raises(PepError) as info:
        inventory.write_exports(str(tmp_path / "taken"), {"results": []}, csv=False)
    assert info.value.code == Exit.OUTPUT
    assert "taken.json" in info.value.message
    assert "userdata" not in (info.value.hint or "")
