"""The enrollment-id inventory: paging through GET /v3/enrollment-ids and exporting it.

Side effects: `collect` calls the fetch functions it is given; `write_exports` writes the
NAME.json / NAME.csv files (atomically). Everything else is pure.

The CSV is byte for byte what the reference CLI's `jq -r '... | @csv'` writes, which is what
the Portal's bulk enrollment upload was fed: every field of a row separated by ',', strings in
double quotes with embedded quotes doubled, numbers and booleans bare, null an empty field,
each row ended by a newline.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from pep_agent.errors import BadResponseError, OutputError, PepError, UsageError
from pep_agent.system.fsutil import atomic_write, os_error

CSV_COLUMNS = (
    "enrollmentID", "serialNumber", "gatewayServicesAddress", "apiAddress", "hardwareVersion",
    "radioConfig", "ledConfig", "category", "deployed", "createdAt",
)
DEFAULT_NAME = "enrollment_ids_list"
DEFAULT_LIMIT = 50
MAX_LIMIT = 1000
ORDERS = ("ASC", "DESC")
# A bound on --all: a million gateways at the largest page size, with room to spare.
MAX_PAGES = 100_000

Page = dict[str, Any]


def check_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_LIMIT:
        raise UsageError(f"--limit {limit}: use a number from 1 to {MAX_LIMIT}")
    return limit


def check_order(order: str) -> str:
    up = order.upper()
    if up not in ORDERS:
        raise UsageError(f"--order {order!r}: use ASC or DESC")
    return up


def page_results(page: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The records of one page; BadResponseError when the page is not a HAL result list."""
    results = page.get("results")
    if not isinstance(results, list) or not all(isinstance(r, dict) for r in results):
        raise BadResponseError("the enrollment id list has no list of records in 'results'")
    return results


def next_href(page: Mapping[str, Any]) -> str | None:
    """The page's `_links.next.href`, if any."""
    links = page.get("_links")
    nxt = links.get("next") if isinstance(links, dict) else None
    href = nxt.get("href") if isinstance(nxt, dict) else None
    return href if isinstance(href, str) and href else None


def collect(first: Callable[[], Page], follow: Callable[[str], Page], *,
            every_page: bool, on_page: Callable[[int, int], None] | None = None,
            max_pages: int = MAX_PAGES) -> list[Page]:
    """Fetch the first page and, with `every_page`, follow `next` until an empty page.

    `on_page(pages_so_far, records_so_far)` is called after each page (progress display).
    """
    pages = [first()]
    records = len(page_results(pages[0]))
    if on_page:
        on_page(1, records)
    seen: set[str] = set()
    while every_page and page_results(pages[-1]):
        href = next_href(pages[-1])
        if href is None:
            break  # a server that omits `next` on its last page ends the list itself
        if href in seen:
            raise BadResponseError("the server's 'next' link points back to a page already read")
        if len(pages) >= max_pages:
            raise BadResponseError(f"more than {max_pages} pages of enrollment ids; stopped")
        seen.add(href)
        pages.append(follow(href))
        records += len(page_results(pages[-1]))
        if on_page:
            on_page(len(pages), records)
    return pages


def combine(pages: list[Page]) -> Page:
    """One export document: a single page as the server sent it, or all pages merged.

    The merged document keeps the page shape (`results`, `total_count` = records in it,
    `limit`, `order`, `_links.self` of the first page) so that the same jq filters work on it.
    """
    if len(pages) == 1:
        return pages[0]
    results = [r for p in pages for r in page_results(p)]
    first = pages[0]
    doc: Page = {}
    links = first.get("_links")
    if isinstance(links, dict) and "self" in links:
        doc["_links"] = {"self": links["self"]}
    doc["results"] = results
    doc["total_count"] = len(results)
    for key in ("limit", "order"):
        if key in first:
            doc[key] = first[key]
    return doc


def json_export(doc: Page) -> bytes:
    return (json.dumps(doc, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def csv_field(value: Any, column: str = "") -> str:
    """One value as jq's @csv writes it."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _jq_number(value)
    if isinstance(value, str):
        return '"' + value.replace('"', '""') + '"'
    kind = "array" if isinstance(value, list) else "object"
    # jq stops with "<kind> (...) is not valid in a csv row"; the value itself is not echoed.
    raise BadResponseError(f"field {column or '?'} of an enrollment record is an {kind}, "
                           "which a CSV row cannot hold")


def _jq_number(value: float) -> str:
    if math.isnan(value):
        return ""  # jq writes NaN as an empty field
    if math.isinf(value):
        # jq prints the largest finite double for an infinity
        return f"{math.copysign(1.7976931348623157e308, value):.17g}"
    if value.is_integer() and abs(value) < 1e17:
        return str(int(value))  # jq prints 1.0 as 1
    return repr(value)


def csv_row(values: Iterable[Any], columns: Iterable[str] = CSV_COLUMNS) -> str:
    return ",".join(csv_field(v, c) for v, c in zip(values, columns))


def csv_export(results: Iterable[Mapping[str, Any]]) -> bytes:
    """The header row, then one row per record, in CSV_COLUMNS order."""
    rows = [csv_row(CSV_COLUMNS, CSV_COLUMNS)]
    rows.extend(csv_row(record.get(c) for c in CSV_COLUMNS) for record in results)
    return "".join(row + "\n" for row in rows).encode("utf-8")


def export_paths(name: str, *, csv: bool) -> list[Path]:
    """NAME.json, and NAME.csv when CSV is asked for, as the reference CLI names them."""
    if not name or name.endswith("/"):
        raise UsageError(f"--output {name!r}: give a file name without extension")
    base = Path(name)
    out = [base.with_name(base.name + ".json")]
    if csv:
        out.append(base.with_name(base.name + ".csv"))
    return out


def write_exports(name: str, doc: Page, *, csv: bool) -> list[Path]:
    """Write the export files; the list of paths written, JSON first."""
    paths = export_paths(name, csv=csv)
    contents = [json_export(doc)]
    if csv:
        contents.append(csv_export(page_results(doc)))  # built before anything is written
    for path, data in zip(paths, contents):
        try:
            atomic_write(path, data, mode=0o644)
        except OSError as e:
            raise file_error(path, e) from None
    return paths


def file_error(path: Path, exc: OSError) -> PepError:
    """The error for a file this command writes in the operator's directory (exit 29)."""
    return os_error(OutputError, f"writing {path}", exc)
