"""Identity records of the simulated pep server, in SQLite, and the paging of their listing.

Side effects: creates, writes and reads one SQLite file (mode 0600: it holds verification
keys). One connection serialised by a lock serves every request thread; the UNIQUE constraint
on the serial number is what lets exactly one of several concurrent requests win.
"""

from __future__ import annotations

import os
import re
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from pep_agent.sim.query import IdentityQuery

# Stored fields as the API shows them, in the order the real server's documents have them.
PUBLIC_FIELDS = (
    "serialNumber", "hardwareVersion", "radioConfig", "ledConfig", "category", "apiAddress",
    "gatewayServicesAddress", "cloudAddress", "deployed", "enrollmentID", "createdAt",
)
DEFAULT_LIMIT = 50
MAX_LIMIT = 1000
_ID = re.compile(r"[0-9a-f]{24}")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS identities (
    _id TEXT PRIMARY KEY,
    serialNumber TEXT NOT NULL UNIQUE,
    hardwareVersion TEXT, radioConfig TEXT, ledConfig TEXT, category TEXT,
    apiAddress TEXT, gatewayServicesAddress TEXT, cloudAddress TEXT,
    deployed INTEGER NOT NULL DEFAULT 0,
    enrollmentID TEXT,
    createdAt INTEGER NOT NULL,
    verificationKey TEXT
)
"""


class DuplicateSerial(Exception):
    """A record with this serial number exists already."""


class Records:
    """The identity collection."""

    def __init__(self, path: Path) -> None:
        self.path = path
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        os.close(fd)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(_SCHEMA)
        newest = self._db.execute("SELECT MAX(_id) FROM identities").fetchone()[0]
        self._last_time = int(newest[:8], 16) if newest else 0
        self._counter = int(newest[8:], 16) if newest else 0

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _new_id(self) -> str:
        # Like a Mongo ObjectId, 24 hex digits that sort by creation: seconds, then a counter
        # that only grows (the seconds never go backwards either, even if the clock does).
        self._last_time = max(self._last_time, int(time.time()))
        self._counter += 1
        return f"{self._last_time:08x}{self._counter:016x}"

    def create(self, q: IdentityQuery) -> tuple[str, int]:
        """Insert a not-yet-deployed record; returns (_id, createdAt). DuplicateSerial if taken."""
        created = int(time.time() * 1000)
        with self._lock:
            record_id = self._new_id()
            try:
                self._db.execute(
                    "INSERT INTO identities (_id, serialNumber, hardwareVersion, radioConfig,"
                    " ledConfig, category, apiAddress, gatewayServicesAddress, cloudAddress,"
                    " deployed, createdAt, verificationKey) VALUES (?,?,?,?,?,?,?,?,?,0,?,?)",
                    (record_id, q.serialNumber, q.hardwareVersion, q.radioConfig, q.ledConfig,
                     q.category, q.apiAddress, q.gatewayServicesAddress,
                     q.gatewayServicesAddress, created, q.verificationKey),
                )
            except sqlite3.IntegrityError:
                raise DuplicateSerial(q.serialNumber) from None
        return record_id, created

    def deploy(self, record_id: str, enrollment_id: str) -> dict[str, Any]:
        """Mark the record deployed with its enrollment id; returns its public fields."""
        with self._lock:
            self._db.execute("UPDATE identities SET deployed = 1, enrollmentID = ? WHERE _id = ?",
                             (enrollment_id, record_id))
            row = self._db.execute("SELECT * FROM identities WHERE _id = ?",
                                   (record_id,)).fetchone()
        return _public(row)

    def delete(self, record_id: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM identities WHERE _id = ?", (record_id,))

    def _deployed_field(self, serial: str, column: str) -> str | None:
        with self._lock:
            row = self._db.execute(
                f"SELECT {column} FROM identities WHERE serialNumber = ? AND deployed = 1",  # noqa: S608 - column is one of two constants
                (serial,),
            ).fetchone()
        return None if row is None else str(row[0])

    def enrollment_id(self, serial: str) -> str | None:
        return self._deployed_field(serial, "enrollmentID")

    def verification_key(self, serial: str) -> str | None:
        return self._deployed_field(serial, "verificationKey")

    def page(self, spec: PageSpec) -> list[dict[str, Any]]:
        """One page of deployed records, with _id, in the spec's order after spec.last."""
        sql = "SELECT * FROM identities WHERE deployed = 1"
        args: list[Any] = []
        if spec.last is not None:
            sql += " AND _id > ?" if spec.order == "ASC" else " AND _id < ?"
            args.append(spec.last)
        sql += f" ORDER BY _id {spec.order} LIMIT ?"
        args.append(spec.limit)
        with self._lock:
            rows = self._db.execute(sql, args).fetchall()
        return [{"_id": row["_id"], **_public(row)} for row in rows]


def _public(row: sqlite3.Row) -> dict[str, Any]:
    record = {name: row[name] for name in PUBLIC_FIELDS}
    record["deployed"] = bool(record["deployed"])
    return record


@dataclass(frozen=True)
class PageSpec:
    limit: int
    order: str
    last: str | None


def page_spec(query: dict[str, str]) -> PageSpec:
    """limit (default 50, capped at 1000), order (ASC|DESC, default DESC) and last; ValueError."""
    raw_limit = query.get("limit") or str(DEFAULT_LIMIT)
    if not raw_limit.isdigit() or int(raw_limit) < 1:
        raise ValueError("limit must be a positive integer")
    order = (query.get("order") or "DESC").upper()
    if order not in ("ASC", "DESC"):
        raise ValueError("order must be ASC or DESC")
    last = query.get("last") or None
    if last is not None:
        last = last.lower()
        if not _ID.fullmatch(last):
            raise ValueError("last must be the _id of an entry")
    return PageSpec(min(int(raw_limit), MAX_LIMIT), order, last)


def _href(path: str, limit: int, order: str, last: str | None) -> str:
    params: dict[str, Any] = {"limit": limit, "order": order}
    if last is not None:
        params["last"] = last
    return f"{path}?{urlencode(params)}"


def hal_page(spec: PageSpec, results: list[dict[str, Any]],
             path: str = "/v3/enrollment-ids") -> dict[str, Any]:
    """The HAL document of one page; `next` continues after its last entry."""
    links: dict[str, Any] = {"self": {"href": _href(path, spec.limit, spec.order, spec.last)}}
    if results:
        links["next"] = {"href": _href(path, spec.limit, spec.order, results[-1]["_id"])}
    return {"_links": links, "results": results, "total_count": len(results),
            "limit": spec.limit, "order": spec.order}
