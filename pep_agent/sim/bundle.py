"""The CBOR bundle of the factory protocol: its items, the request the factory tool sends, the
response FCC returns, and the factory tool's check of that response. No side effects.

Responses are indefinite-length maps, as tinycbor writes them. Integer configuration values
are stored as the real FCC stores them: 8 bytes little-endian, 4 for mbed.UseBootstrap,
mbed.MemoryTotalKB and mbed.FirstToClaim. How FCC checks a request is in bundle_checks.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, Union

import cbor2

from pep_agent.gateway import esfs

SCHEME_VERSION = "0.0.1"
SUCCESS_MESSAGE = "The Factory process succeeded\n"

ItemData = Union[bytes, str, int]


class FccStatus(IntEnum):
    """fcc_status_e of the real FCC (fcc_status.h), every value in its order."""

    SUCCESS = 0
    ERROR = 1
    MEMORY_OUT = 2
    INVALID_PARAMETER = 3
    STORE_ERROR = 4
    INTERNAL_ITEM_ALREADY_EXIST = 5
    CA_ERROR = 6
    ROT_ERROR = 7
    ENTROPY_ERROR = 8
    FACTORY_DISABLED_ERROR = 9
    INVALID_CERTIFICATE = 10
    INVALID_CERT_ATTRIBUTE = 11
    INVALID_CA_CERT_SIGNATURE = 12
    EXPIRED_CERTIFICATE = 13
    INVALID_LWM2M_CN_ATTR = 14
    KCM_ERROR = 15
    KCM_STORAGE_ERROR = 16
    KCM_FILE_EXIST_ERROR = 17
    KCM_CRYPTO_ERROR = 18
    NOT_INITIALIZED = 19
    BUNDLE_ERROR = 20
    BUNDLE_RESPONSE_ERROR = 21
    BUNDLE_UNSUPPORTED_GROUP = 22
    BUNDLE_INVALID_GROUP = 23
    BUNDLE_INVALID_SCHEME = 24
    ITEM_NOT_EXIST = 25
    EMPTY_ITEM = 26
    WRONG_ITEM_DATA_SIZE = 27
    URI_WRONG_FORMAT = 28
    FIRST_TO_CLAIM_NOT_ALLOWED = 29
    BOOTSTRAP_MODE_ERROR = 30
    OUTPUT_INFO_ERROR = 31
    WARNING_CREATE_ERROR = 32
    UTC_OFFSET_WRONG_FORMAT = 33
    CERTIFICATE_PUBLIC_KEY_CORRELATION_ERROR = 34
    BUNDLE_INVALID_KEEP_ALIVE_SESSION_STATUS = 35
    TOO_MANY_CSR_REQUESTS = 36
    NOT_SUPPORTED = 37


# InfoMessage of an error that names no item (fcc_output_info_handler.c).
GENERAL_ERROR = "General error:"


class BundleError(Exception):
    """The bundle is not acceptable; `status` goes into the response's ReturnStatus.

    `partial` is what was processed before the error (items to store, SID if read).
    """

    def __init__(self, status: FccStatus, message: str = GENERAL_ERROR,
                 warnings: list[str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.partial: Bundle | None = None
        # Warnings gathered before the error: the real FCC sends them with the error.
        self.warnings: list[str] = warnings if warnings is not None else []


# Integer parameters FCC stores as 32 bits; every other integer takes 64
# (fcc_bundle_config_params_utils.c; the name is compared over the sent name's length).
UINT32_PARAMS = ("mbed.UseBootstrap", "mbed.MemoryTotalKB", "mbed.FirstToClaim")


@dataclass(frozen=True)
class Item:
    """One stored item: group is Keys, Certificates or ConfigParams.

    prefix replaces KCM's prefix of the group in the stored name: "Crt1_", "Crt2_", ... for the
    certificates of a chain after its first; chain is the length of the chain a certificate
    begins (KCM stores it as metadata of that first certificate), 0 for a lone certificate.
    """

    group: str
    name: str
    data: ItemData
    key_type: str | None = None
    prefix: str | None = None
    chain: int = 0

    def content(self) -> bytes:
        """What storage holds for this item: bytes as they are, text UTF-8, integers as FCC
        stores them (little-endian, 4 bytes for UINT32_PARAMS, else 8)."""
        uint32 = self.group == "ConfigParams" and any(p.startswith(self.name)
                                                      for p in UINT32_PARAMS)
        if isinstance(self.data, int):
            value = self.data & 0xFFFFFFFFFFFFFFFF  # a negative CBOR integer is read as int64
            return value.to_bytes(8, "little")[:4 if uint32 else 8]
        raw = self.data if isinstance(self.data, bytes) else self.data.encode()
        if uint32:
            # FCC stores 4 bytes whatever the type; from a shorter value it reads past it into
            # the rest of the message, which the stand-in does not have: 0xff instead.
            return (raw + b"\xff" * 4)[:4]
        return raw

    @property
    def typed(self) -> str:
        """The name KCM stores the item under: its prefix and name."""
        if self.prefix is not None:
            return self.prefix + self.name
        return esfs.typed_name(self.group, self.name, self.key_type)


@dataclass
class Bundle:
    """A checked request."""

    items: list[Item] = field(default_factory=list)
    sid: str | None = None
    verify: bool = True
    keep_alive: bool = False
    disable: bool = False
    # Whether every top-level key was processed (only then does KpAlvSess count).
    complete: bool = False
    # (private key name, CSR in DER) for each CSR request.
    csrs: list[tuple[str, bytes]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    # Certificates of a refused chain that KCM had written to BACKUP only.
    backup_only: list[Item] = field(default_factory=list)

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
                    warnings: Iterable[str] = (),
                    csrs: Iterable[tuple[str, bytes]] = ()) -> bytes:
    """The CBOR response FCC returns after processing a request (indefinite-length map); each
    warning ends with a newline, as FCC joins them."""
    pairs: list[tuple[str, Any]] = [("SchemeVersion", SCHEME_VERSION)]
    csr_list = [{"PrKN": name, "Data": der} for name, der in csrs]
    if csr_list:
        pairs.append(("Csrs", csr_list))
    if sid is not None:
        pairs.append(("SID", sid))
    pairs += [("ReturnStatus", int(status)), ("InfoMessage", message)]
    warning = "".join(w + "\n" for w in warnings)
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
