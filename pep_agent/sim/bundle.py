"""The CBOR bundle of the factory protocol: its items, the request the factory tool sends, the
response FCC returns, and the factory tool's check of that response. No side effects.

Responses are indefinite-length maps, as tinycbor writes them. Integer configuration values
are stored as decimal text (the real FCC stores binary integers, under its encryption): file
names and layout are the real ones, the stored bytes are not. How FCC checks a request is in
bundle_checks.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, Union

import cbor2

SCHEME_VERSION = "0.0.1"
SUCCESS_MESSAGE = "The Factory process succeeded\n"

ItemData = Union[bytes, str, int]


class FccStatus(IntEnum):
    """fcc_status_e values of the real FCC (the ones the stand-in can produce)."""

    SUCCESS = 0
    ERROR = 1
    MEMORY_OUT = 2
    INVALID_PARAMETER = 3
    STORE_ERROR = 4
    INVALID_CERTIFICATE = 10
    KCM_CRYPTO_ERROR = 18
    BUNDLE_ERROR = 20
    BUNDLE_INVALID_GROUP = 23
    BUNDLE_INVALID_SCHEME = 24
    ITEM_NOT_EXIST = 25
    EMPTY_ITEM = 26
    WRONG_ITEM_DATA_SIZE = 27
    URI_WRONG_FORMAT = 28
    BOOTSTRAP_MODE_ERROR = 30
    UTC_OFFSET_WRONG_FORMAT = 33
    BUNDLE_INVALID_KEEP_ALIVE_SESSION_STATUS = 35
    NOT_SUPPORTED = 37


class BundleError(Exception):
    """The bundle is not acceptable; `status` goes into the response's ReturnStatus.

    `partial` is what was processed before the error (items to store, SID if read).
    """

    def __init__(self, status: FccStatus, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.partial: Bundle | None = None


@dataclass(frozen=True)
class Item:
    """One stored item: group is Keys, Certificates or ConfigParams."""

    group: str
    name: str
    data: ItemData
    key_type: str | None = None

    def content(self) -> bytes:
        """What storage holds for this item: bytes as they are, text UTF-8, numbers in decimal."""
        if isinstance(self.data, bytes):
            return self.data
        if isinstance(self.data, str):
            return self.data.encode()
        return str(self.data).encode()


@dataclass
class Bundle:
    """A checked request."""

    items: list[Item] = field(default_factory=list)
    sid: str | None = None
    verify: bool = True
    keep_alive: bool = False
    disable: bool = False

    def get(self, name: str) -> Item | None:
        return next((i for i in self.items if i.name == name), None)


def encode_request(items: list[Item], *, sid: str | None = None, verify: bool = True) -> bytes:
    """The CBOR request for items, grouped as the factory tool sends them (flags as 0/1)."""
    doc: dict[str, Any] = {"SchemeVersion": SCHEME_VERSION}
    for group in ("Keys", "Certificates", "ConfigParams"):
        entries = []
        for item in (i for i in items if i.group == group):
            entry: dict[str, Any] = {"Name": item.name}
            if group == "Keys":
                entry["Type"] = item.key_type or "ECCPrivate"
            if group != "ConfigParams":
                entry["Format"] = "der"
            entry["Data"] = item.data
            entries.append(entry)
        if entries:
            doc[group] = entries
    doc["Verify"] = int(verify)
    if sid is not None:
        doc["SID"] = sid
    return bytes(cbor2.dumps(doc))


def _indefinite_map(pairs: Iterable[tuple[str, Any]]) -> bytes:
    """A CBOR map of indefinite length (what tinycbor's CborIndefiniteLength writes)."""
    body = b"".join(bytes(cbor2.dumps(k)) + bytes(cbor2.dumps(v)) for k, v in pairs)
    return b"\xbf" + body + b"\xff"


def encode_response(status: FccStatus, message: str, sid: str | None = None,
                    warnings: Iterable[str] = ()) -> bytes:
    """The CBOR response FCC returns after processing a request (indefinite-length map)."""
    pairs: list[tuple[str, Any]] = [("SchemeVersion", SCHEME_VERSION)]
    if sid is not None:
        pairs.append(("SID", sid))
    pairs += [("ReturnStatus", int(status)), ("InfoMessage", message)]
    warning = "\n".join(warnings)
    if warning:
        pairs.append(("WarningInfo", warning))
    return _indefinite_map(pairs)


def _refused_answer(reason: str) -> BundleError:
    return BundleError(FccStatus.BUNDLE_ERROR, f"the factory tool refused FCC's answer: {reason}")


def decode_response(message: bytes, sid: str | None = None) -> dict[str, Any]:
    """Check FCC's response (scheme, ReturnStatus 0, SID echo); BundleError says who refused what.

    ReturnStatus is read before the SID: the real FCC leaves SID out of an error answer when the
    error came before it read the SID, and the error is what the operator needs to see.
    """
    try:
        doc = cbor2.loads(message)
    except Exception as e:  # same as decode_request
        raise _refused_answer(f"not CBOR ({type(e).__name__})") from None
    if not isinstance(doc, dict):
        raise _refused_answer("not a CBOR map")
    if doc.get("SchemeVersion") != SCHEME_VERSION:
        raise _refused_answer("no valid SchemeVersion")
    status = doc.get("ReturnStatus")
    if status != 0:
        code = FccStatus.ERROR
        name = "unknown"
        if isinstance(status, int) and status in FccStatus._value2member_map_:
            code = FccStatus(status)
            name = code.name
        info = doc.get("InfoMessage")
        detail = f": {info.strip()[:200]}" if isinstance(info, str) and info.strip() else ""
        raise BundleError(code, f"FCC refused the bundle: ReturnStatus {status!r} ({name}){detail}")
    if sid is not None and doc.get("SID") != sid:
        raise _refused_answer("it does not echo the session id")
    return doc
