"""FCC's checks of a request bundle, and its Verify, as the real FCC makes them. No side effects.

Checks follow the real FCC (mbed-cloud-client 4.10.0, fcc_bundle_handler.c): the request is a
definite-length map of at most 12 text keys, SchemeVersion is checked first (24), then the keys
are processed in order: items are taken as they come (so the items before an error are stored),
flags are the integers 0 or 1 (CBOR true/false is 20, a bad KpAlvSess 35), and SID counts as
read only once its key was reached. A key selects the first group whose name it begins
(the real FCC compares with strncmp over the key's length); a key that begins no group is 23.

Left out, because the simulator holds no device keys and no PKI: the cryptographic checks of
keys and certificates (DER framing is checked instead), CSR requests (37), the certificate time
and CN checks of Verify, and the exact warning texts beyond "Item not set".
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any

import cbor2

from pep_agent.sim.bundle import SCHEME_VERSION, Bundle, BundleError, FccStatus, Item

# Processing order of the real FCC's key loop (SchemeVersion, Entropy and ROT are handled
# before it); a key selects the first group it is a prefix of.
GROUP_ORDER = ("SchemeVersion", "Entropy", "ROT", "Keys", "Certificates", "CertificateChains",
               "ConfigParams", "Verify", "Disable", "KpAlvSess", "SID", "CsrReqs")
MAX_KEYS = 12
KEY_TYPES = frozenset({"ECCPrivate", "ECCPublic"})
ROT_SIZE = 16
ENTROPY_SIZE = 48
MAX_NAME = 64
# Items whose absence Verify reports as a warning, not an error (firmware update, time).
WARN_IF_MISSING = ("mbed.UTCOffset", "mbed.UpdateAuthCert", "mbed.ClassId", "mbed.VendorId")
UUID_ITEMS = ("mbed.ClassId", "mbed.VendorId")
UUID_SIZE = 16
CURRENT_TIME = "mbed.CurrentTime"


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


def _flag(value: Any, group: str, status: FccStatus = FccStatus.BUNDLE_ERROR) -> bool:
    # bool is an int subclass in Python but a distinct CBOR type the FCC rejects.
    if isinstance(value, bool) or value not in (0, 1):
        raise BundleError(status, f"General error:{group}")
    return bool(value)


def _check_size(doc: Mapping[Any, Any], group: str, size: int) -> None:
    if group in doc:
        value = doc[group]
        if not isinstance(value, bytes):
            raise BundleError(FccStatus.BUNDLE_ERROR, f"General error:{group}")
        if len(value) != size:
            raise BundleError(FccStatus.WRONG_ITEM_DATA_SIZE, f"Item size is wrong:{group}")


def _load_map(message: bytes) -> dict[Any, Any]:
    """The top map: one whole CBOR item, a definite-length map of at most MAX_KEYS keys."""
    stream = io.BytesIO(message)
    try:
        doc = cbor2.CBORDecoder(stream).decode()
    except Exception as e:  # cbor2 raises several unrelated types for malformed input
        raise BundleError(FccStatus.BUNDLE_ERROR, f"General error: not CBOR ({type(e).__name__})") \
            from None
    if stream.tell() != len(message):
        raise BundleError(FccStatus.BUNDLE_ERROR, "General error: data after the CBOR item")
    if not isinstance(doc, dict):
        raise BundleError(FccStatus.BUNDLE_ERROR, "General error: not a CBOR map")
    if message[0] == 0xBF:
        raise BundleError(FccStatus.BUNDLE_ERROR, "General error: indefinite-length map")
    if len(doc) > MAX_KEYS:
        raise BundleError(FccStatus.BUNDLE_ERROR, f"General error: more than {MAX_KEYS} keys")
    return doc


def _group_of(key: str) -> str | None:
    return next((g for g in GROUP_ORDER if g.startswith(key)), None)


def _take(result: Bundle, group: str, value: Any) -> None:
    """Process one top-level key's value into result, as the FCC's key loop does."""
    # Items are appended one by one: those before a bad one are stored, as by the real FCC.
    if group in ("Keys", "Certificates"):
        for entry in _entries(value, group):
            result.items.append(_binary_item(group, entry))
    elif group == "CertificateChains":
        result.items += _chain_items(value)
    elif group == "ConfigParams":
        for entry in _entries(value, group):
            item = _config_item(entry)
            # mbed.CurrentTime sets the device clock and is not stored
            # (fcc_bundle_config_params_utils.c).
            if item.name != CURRENT_TIME:
                result.items.append(item)
    elif group == "Verify":
        result.verify = _flag(value, group)
    elif group == "Disable":
        result.disable = _flag(value, group)
    elif group == "KpAlvSess":
        result.keep_alive = _flag(value, group,
                                  FccStatus.BUNDLE_INVALID_KEEP_ALIVE_SESSION_STATUS)
    elif group == "SID":
        if not isinstance(value, str):
            raise BundleError(FccStatus.BUNDLE_ERROR, "General error:SID")
        result.sid = value


def _entries(value: Any, group: str) -> list[Mapping[Any, Any]]:
    if not isinstance(value, list) or not all(isinstance(e, dict) for e in value):
        raise BundleError(FccStatus.BUNDLE_ERROR, f"General error:{group}")
    return value


def _chain_items(value: Any) -> list[Item]:
    items = []
    for entry in _entries(value, "CertificateChains"):
        name = _check_name(entry, "CertificateChains")
        certs = entry.get("DataArray", entry.get("Data"))
        if not isinstance(certs, list) or not certs:
            raise BundleError(FccStatus.EMPTY_ITEM, f"Item empty:{name}")
        for index, cert in enumerate(certs):
            items.append(_binary_item("Certificates", {
                "Name": f"{name}_{index}", "Format": "der", "Data": cert}))
    return items


def decode_request(message: bytes) -> Bundle:
    """Check a request the way the FCC does; BundleError (with .partial) says why it is rejected."""
    result = Bundle()
    try:
        doc = _load_map(message)
        scheme = doc.get("SchemeVersion")
        if isinstance(scheme, bytes):
            scheme = scheme.decode("utf-8", "replace")
        if scheme != SCHEME_VERSION:
            raise BundleError(FccStatus.BUNDLE_INVALID_SCHEME, "General error:SchemeVersion")
        _check_size(doc, "Entropy", ENTROPY_SIZE)
        _check_size(doc, "ROT", ROT_SIZE)
        csr_requests = False
        for key, value in doc.items():
            if not isinstance(key, str):
                raise BundleError(FccStatus.BUNDLE_ERROR, "General error: a key is not text")
            group = _group_of(key)
            if group is None:
                raise BundleError(FccStatus.BUNDLE_INVALID_GROUP, "General error:")
            csr_requests = csr_requests or group == "CsrReqs"
            _take(result, group, value)
        if result.disable and result.keep_alive:
            raise BundleError(FccStatus.BUNDLE_INVALID_KEEP_ALIVE_SESSION_STATUS,
                              "General error:Disable")
        if csr_requests:
            if result.sid is None or result.verify or result.disable:
                raise BundleError(FccStatus.BUNDLE_ERROR, "General error:CsrReqs")
            raise BundleError(FccStatus.NOT_SUPPORTED, "the simulator does not create CSRs")
    except BundleError as e:
        e.partial = result
        raise
    return result


def _utc_offset_ok(value: str) -> bool:
    """±HH:MM, checked character by character as fcc_verification.c does."""
    return (len(value) >= 6 and value[0] in "+-" and value[3] == ":"
            and all(value[i].isdigit() and value[i].isascii() for i in (1, 2, 4, 5)))


def required_items(stored: Mapping[str, Item]) -> list[str]:
    """Names the device needs to connect to the cloud (what FCC's Verify checks)."""
    use_bootstrap = stored.get("mbed.UseBootstrap")
    prefix = "Bootstrap" if use_bootstrap is None or use_bootstrap.data in (1, "1") else "LwM2M"
    return ["mbed.UseBootstrap", "mbed.EndpointName", f"mbed.{prefix}ServerURI",
            f"mbed.{prefix}ServerCACert", f"mbed.{prefix}DeviceCert",
            f"mbed.{prefix}DevicePrivateKey"]


def check_session_end(stored: Mapping[str, Item]) -> None:
    """On the last message of a session the bootstrap CA certificate must be stored (25)."""
    if "mbed.BootstrapServerCACert" not in stored:
        raise BundleError(FccStatus.ITEM_NOT_EXIST,
                          "Item does not exist:mbed.BootstrapServerCACert")


def verify(stored: Mapping[str, Item]) -> list[str]:
    """FCC's Verify over everything stored in the session: the warnings, or BundleError."""
    use_bootstrap = stored.get("mbed.UseBootstrap")
    if use_bootstrap is not None and use_bootstrap.data not in (0, 1):
        raise BundleError(FccStatus.BOOTSTRAP_MODE_ERROR,
                          "Bootstrap mode value incorrect:mbed.UseBootstrap")
    missing = [name for name in required_items(stored) if name not in stored]
    if missing:
        raise BundleError(FccStatus.ITEM_NOT_EXIST, f"Item does not exist:{missing[0]}")
    uri_name = required_items(stored)[2]
    if not stored[uri_name].content().startswith(b"coaps://"):
        raise BundleError(FccStatus.URI_WRONG_FORMAT, f"URI format incorrect:{uri_name}")
    offset = stored.get("mbed.UTCOffset")
    if offset is not None and not _utc_offset_ok(offset.content().decode("utf-8", "replace")):
        raise BundleError(FccStatus.UTC_OFFSET_WRONG_FORMAT, "UTC offset incorrect:mbed.UTCOffset")
    for name in UUID_ITEMS:
        item = stored.get(name)
        if item is not None and len(item.content()) != UUID_SIZE:
            raise BundleError(FccStatus.WRONG_ITEM_DATA_SIZE, f"Item size is wrong:{name}")
    return [f"Item not set:{name}" for name in WARN_IF_MISSING if name not in stored]
