"""The CBOR bundle carried by the factory protocol: building, checking, responses. No side effects.

Checks follow the real FCC: unknown top-level groups are FCC_STATUS_BUNDLE_INVALID_GROUP, a
missing or foreign SchemeVersion is FCC_STATUS_BUNDLE_INVALID_SCHEME, and every key,
certificate and configuration item is checked for name, format and data type.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, Union

import cbor2

SCHEME_VERSION = "0.0.1"
SUCCESS_MESSAGE = "The Factory process succeeded"
GROUPS = frozenset({
    "SchemeVersion", "Keys", "Certificates", "CertificateChains", "ConfigParams", "CsrReqs",
    "Entropy", "ROT", "Verify", "Disable", "KpAlvSess", "SID",
})
KEY_TYPES = frozenset({"ECCPrivate", "ECCPublic"})
ROT_SIZE = 16
ENTROPY_SIZE = 48
MAX_NAME = 64

ItemData = Union[bytes, str, int]


class FccStatus(IntEnum):
    """fcc_status_e values of the real FCC (the ones the stand-in can produce)."""

    SUCCESS = 0
    ERROR = 1
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
    NOT_SUPPORTED = 37


class BundleError(Exception):
    """The bundle is not acceptable; `status` goes into the response's ReturnStatus."""

    def __init__(self, status: FccStatus, message: str) -> None:
        super().__init__(message)
        self.status = status


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
    verify: bool = False
    keep_alive: bool = False

    def get(self, name: str) -> Item | None:
        return next((i for i in self.items if i.name == name), None)


def encode_request(items: list[Item], *, sid: str | None = None, verify: bool = True) -> bytes:
    """The CBOR request for items, grouped as the factory tool sends them."""
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
    if verify:
        doc["Verify"] = True
    if sid is not None:
        doc["SID"] = sid
    return bytes(cbor2.dumps(doc))


def _check_name(entry: Mapping[Any, Any], group: str) -> str:
    name = entry.get("Name")
    if not isinstance(name, str) or not name:
        raise BundleError(FccStatus.INVALID_PARAMETER, f"{group} item without a Name")
    # Names become file names in storage: nothing that could leave the storage folder.
    if len(name) > MAX_NAME or "/" in name or "\0" in name or name in (".", ".."):
        raise BundleError(FccStatus.INVALID_PARAMETER, f"invalid item name in {group}")
    return name


def _looks_like_der(data: bytes) -> bool:
    """A single DER SEQUENCE whose encoded length covers exactly the data."""
    if len(data) < 2 or data[0] != 0x30:
        return False
    first = data[1]
    if first < 0x80:
        return 2 + first == len(data)
    count = first & 0x7F
    if count == 0 or count > 4 or len(data) < 2 + count:
        return False
    return 2 + count + int.from_bytes(data[2:2 + count], "big") == len(data)


def _binary_item(group: str, entry: Mapping[Any, Any]) -> Item:
    name = _check_name(entry, group)
    if entry.get("Format") != "der":
        raise BundleError(FccStatus.BUNDLE_ERROR, f"{name}: only the der format is supported")
    data = entry.get("Data")
    if not isinstance(data, bytes):
        raise BundleError(FccStatus.BUNDLE_ERROR, f"{name}: Data must be a byte string")
    if not data:
        raise BundleError(FccStatus.EMPTY_ITEM, f"{name}: empty item")
    key_type = None
    if group == "Keys":
        key_type = entry.get("Type")
        if key_type not in KEY_TYPES:
            raise BundleError(FccStatus.BUNDLE_ERROR, f"{name}: unknown key Type")
    if not _looks_like_der(data):
        status = FccStatus.KCM_CRYPTO_ERROR if group == "Keys" else FccStatus.INVALID_CERTIFICATE
        raise BundleError(status, f"{name}: data is not DER")
    return Item(group, name, data, key_type)


def _config_item(entry: Mapping[Any, Any]) -> Item:
    name = _check_name(entry, "ConfigParams")
    data = entry.get("Data")
    # bool is an int subclass in Python but a distinct CBOR type the FCC rejects.
    if isinstance(data, bool) or not isinstance(data, (bytes, str, int)):
        raise BundleError(FccStatus.BUNDLE_ERROR, f"{name}: Data must be text, bytes or int")
    if isinstance(data, (bytes, str)) and not data:
        raise BundleError(FccStatus.EMPTY_ITEM, f"{name}: empty item")
    return Item("ConfigParams", name, data)


def _entries(doc: Mapping[Any, Any], group: str) -> list[Mapping[Any, Any]]:
    value = doc.get(group, [])
    if not isinstance(value, list) or not all(isinstance(e, dict) for e in value):
        raise BundleError(FccStatus.BUNDLE_ERROR, f"{group} must be a list of maps")
    return value


def _chain_items(doc: Mapping[Any, Any]) -> list[Item]:
    items = []
    for entry in _entries(doc, "CertificateChains"):
        name = _check_name(entry, "CertificateChains")
        certs = entry.get("Data")
        if not isinstance(certs, list) or not certs:
            raise BundleError(FccStatus.EMPTY_ITEM, f"{name}: empty certificate chain")
        for index, cert in enumerate(certs):
            items.append(_binary_item("Certificates", {
                "Name": f"{name}_{index}", "Format": "der", "Data": cert}))
    return items


def _flag(doc: Mapping[Any, Any], group: str) -> bool:
    value = doc.get(group, False)
    if not isinstance(value, bool):
        raise BundleError(FccStatus.BUNDLE_ERROR, f"{group} must be a boolean")
    return value


def _check_sizes(doc: Mapping[Any, Any]) -> None:
    for group, size in (("ROT", ROT_SIZE), ("Entropy", ENTROPY_SIZE)):
        if group in doc:
            value = doc[group]
            if not isinstance(value, bytes):
                raise BundleError(FccStatus.BUNDLE_ERROR, f"{group} must be a byte string")
            if len(value) != size:
                raise BundleError(FccStatus.WRONG_ITEM_DATA_SIZE, f"{group} must be {size} bytes")


def decode_request(message: bytes) -> Bundle:
    """Check a request the way the FCC does; BundleError says why it is rejected."""
    try:
        doc = cbor2.loads(message)
    except Exception as e:  # cbor2 raises several unrelated types for malformed input
        raise BundleError(FccStatus.BUNDLE_ERROR, f"message is not CBOR ({type(e).__name__})") \
            from None
    if not isinstance(doc, dict):
        raise BundleError(FccStatus.BUNDLE_ERROR, "message is not a CBOR map")
    unknown = sorted(str(k) for k in doc if k not in GROUPS)
    if unknown:
        raise BundleError(FccStatus.BUNDLE_INVALID_GROUP, f"invalid group(s): {', '.join(unknown)}")
    if doc.get("SchemeVersion") != SCHEME_VERSION:
        raise BundleError(FccStatus.BUNDLE_INVALID_SCHEME, "missing or unsupported SchemeVersion")
    if len(doc) == 1:
        raise BundleError(FccStatus.INVALID_PARAMETER, "no groups in message")
    if doc.get("CsrReqs"):
        raise BundleError(FccStatus.NOT_SUPPORTED, "the simulator does not support CSR requests")
    sid = doc.get("SID")
    if sid is not None and not isinstance(sid, str):
        raise BundleError(FccStatus.BUNDLE_ERROR, "SID must be text")
    _check_sizes(doc)
    items = [_binary_item("Keys", e) for e in _entries(doc, "Keys")]
    items += [_binary_item("Certificates", e) for e in _entries(doc, "Certificates")]
    items += _chain_items(doc)
    items += [_config_item(e) for e in _entries(doc, "ConfigParams")]
    bundle = Bundle(items, sid, _flag(doc, "Verify"), _flag(doc, "KpAlvSess"))
    _flag(doc, "Disable")
    return bundle


def required_items(bundle: Bundle) -> list[str]:
    """Names the device needs to connect to the cloud (what FCC's Verify checks)."""
    use_bootstrap = bundle.get("mbed.UseBootstrap")
    prefix = "Bootstrap" if use_bootstrap is None or use_bootstrap.data in (1, "1") else "LwM2M"
    return ["mbed.UseBootstrap", "mbed.EndpointName", f"mbed.{prefix}ServerURI",
            f"mbed.{prefix}ServerCACert", f"mbed.{prefix}DeviceCert",
            f"mbed.{prefix}DevicePrivateKey"]


def verify(bundle: Bundle) -> None:
    """BundleError(ITEM_NOT_EXIST) when an item needed to connect is missing."""
    missing = [name for name in required_items(bundle) if bundle.get(name) is None]
    if missing:
        raise BundleError(FccStatus.ITEM_NOT_EXIST, f"missing item(s): {', '.join(missing)}")


def encode_response(status: FccStatus, message: str, sid: str | None = None) -> bytes:
    """The CBOR response FCC returns after processing a request."""
    doc: dict[str, Any] = {"SchemeVersion": SCHEME_VERSION}
    if sid is not None:
        doc["SID"] = sid
    doc["ReturnStatus"] = int(status)
    doc["InfoMessage"] = message
    return bytes(cbor2.dumps(doc))


def decode_response(message: bytes, sid: str | None = None) -> dict[str, Any]:
    """Check FCC's response (scheme, SID echo, ReturnStatus 0); BundleError otherwise."""
    try:
        doc = cbor2.loads(message)
    except Exception as e:  # same as decode_request
        raise BundleError(FccStatus.BUNDLE_ERROR, f"response is not CBOR ({type(e).__name__})") \
            from None
    if not isinstance(doc, dict):
        raise BundleError(FccStatus.BUNDLE_ERROR, "response is not a CBOR map")
    if doc.get("SchemeVersion") != SCHEME_VERSION:
        raise BundleError(FccStatus.BUNDLE_INVALID_SCHEME, "response has no valid SchemeVersion")
    if sid is not None and doc.get("SID") != sid:
        raise BundleError(FccStatus.BUNDLE_ERROR, "response does not echo the session id")
    status = doc.get("ReturnStatus")
    if status != 0:
        info = doc.get("InfoMessage")
        detail = f": {info}" if isinstance(info, str) else ""
        code = FccStatus.ERROR
        if isinstance(status, int) and status in FccStatus._value2member_map_:
            code = FccStatus(status)
        raise BundleError(code, f"FCC returned status {status!r}{detail}")
    return doc
