"""FCC's processing of a request bundle, and its Verify, as the real FCC makes them. No side
effects beyond the Device state it is given (the items it counts as stored, its clock).

Follows mbed-cloud-client 4.10.0 (fcc_bundle_handler.c and the key-config-manager checks):
- the request is a definite-length map of at most 12 text keys (a key may come twice: each
  value is processed); SchemeVersion is checked first (24), then the keys in order. A key
  selects the first group whose name it begins (strncmp over the key's length), as do the
  fields of each item; a key that begins no group is 23, a field no item knows is 37.
- items are stored as they are read, so those before an error stay stored. Each is checked as
  KCM stores it: a certificate must parse as X.509 with a P-256 key and a key must be a P-256
  key (else 18), only the der format is taken (37), an item already stored in the session is 17,
  an empty key or certificate is 16. A chain is stored as Cert_<name>, Crt1_<name>, ... and each
  certificate must be signed by the next.
- flags are the integers 0 or 1 (CBOR true/false is 20, a bad KpAlvSess 35); SID counts as read
  only once its key was reached. KpAlvSess counts only when every key was processed.
- after the keys: Disable in a kept-alive message is 35; CSR requests need a SID and neither
  Verify nor Disable (20) and get a new P-256 key each; the last message needs the bootstrap CA
  (25); then Verify, whose warnings go with its error too.

Left out: the factory-disabled state a `Disable: 1` leaves for FCC's next start (the stand-in
exits after the session, and its next start erases storage), the LwM2M OU/aid comparison,
Entropy and ROT contents beyond their size, and CSR extensions beyond reading them.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass, field
from typing import Any

import cbor2

from pep_agent.gateway import esfs
from pep_agent.sim import x509
from pep_agent.sim.bundle import (
    GENERAL_ERROR,
    SCHEME_VERSION,
    Bundle,
    BundleError,
    FccStatus,
    Item,
)

# Processing order of the real FCC's key loop (SchemeVersion, Entropy and ROT are handled
# before it); a key selects the first group it is a prefix of.
GROUP_ORDER = ("SchemeVersion", "Entropy", "ROT", "Keys", "Certificates", "CertificateChains",
               "ConfigParams", "Verify", "Disable", "KpAlvSess", "SID", "CsrReqs")
MAX_KEYS = 12
ROT_SIZE = 16
ENTROPY_SIZE = 48
MAX_NAME = 64
MAX_CHAIN = 5
MAX_CSRS = 5
UUID_ITEMS = ("mbed.ClassId", "mbed.VendorId")
UUID_SIZE = 16
CURRENT_TIME = "mbed.CurrentTime"
TEN_YEARS = 10 * 365 * 24 * 3600
# How far in the future a certificate may start before FCC warns (fcc_verification.c).
CLOCK_SLACK = 60
# The configuration parameters Verify requires, in its order (fcc_verification.c).
META_DATA = ("mbed.Manufacturer", "mbed.ModelNumber", "mbed.DeviceType", "mbed.HardwareVersion",
             "mbed.MemoryTotalKB", "mbed.SerialNumber")

# InfoMessage prefixes per status (fcc_get_fcc_error_string); the others are GENERAL_ERROR.
STATUS_TEXT = {
    FccStatus.CA_ERROR: "CA error:",
    FccStatus.ROT_ERROR: "Root of trust error:",
    FccStatus.STORE_ERROR: "Internal storage error:",
    FccStatus.KCM_CRYPTO_ERROR: "KCM crypto error:",
    FccStatus.INVALID_CERTIFICATE: "Certificate invalid:",
    FccStatus.INVALID_LWM2M_CN_ATTR: "Certificate CN attribute invalid:",
    FccStatus.ENTROPY_ERROR: "Entropy error:",
    FccStatus.FACTORY_DISABLED_ERROR: "Factory disabled error:",
    FccStatus.ITEM_NOT_EXIST: "Item does not exist:",
    FccStatus.WRONG_ITEM_DATA_SIZE: "Item size is wrong:",
    FccStatus.EMPTY_ITEM: "Item empty:",
    FccStatus.URI_WRONG_FORMAT: "URI format incorrect:",
    FccStatus.FIRST_TO_CLAIM_NOT_ALLOWED: "first to claim not allowed:",
    FccStatus.BOOTSTRAP_MODE_ERROR: "Bootstrap mode value incorrect:",
    FccStatus.UTC_OFFSET_WRONG_FORMAT: "UTC offset incorrect:",
    FccStatus.INVALID_CA_CERT_SIGNATURE: "Validation of CA certificate failed:",
    FccStatus.EXPIRED_CERTIFICATE: "Certificate expired:",
    FccStatus.CERTIFICATE_PUBLIC_KEY_CORRELATION_ERROR: "Certificate public key validation failed:",
    # The real text: its build stringizes the macro's name, not its value.
    FccStatus.TOO_MANY_CSR_REQUESTS:
        "Too many CSR requests. Maximum CSR requests supported is CSR_MAX_NUMBER_OF_CSRS",
}
# KCM's own texts for the errors of storing an item (fcc_output_info_handler.c).
ALREADY_EXISTS = "Data already exists:"
DATA_EMPTY = "Item data empty:"
KEY_INVALID = "Public key format invalid:"
CERT_INVALID = "Certificate parse failed:"
CHAIN_INVALID = "Chain validation error:"
SELF_CHECK = "Self-generated certificate validation failed:"
# Warnings.
NOT_SET = "Item not set:"
REDUNDANT = "Item redundant:"
SELF_SIGNED = "Certificate is self signed:"
NO_CLOCK = "Certificate validity cannot be checked:"
UNDER_TEN_YEARS = "Certificate validity is less than 10 years:"
CA_ID_UNSET = "CA identifier wasn't set properly:"
BOOTSTRAP_OFF = "Bootstrap mode not activated:"


def error(status: FccStatus, name: str = "", warnings: list[str] | None = None) -> BundleError:
    """The error FCC answers with status, naming the item (its InfoMessage)."""
    return BundleError(status, STATUS_TEXT.get(status, GENERAL_ERROR) + name, warnings)


def _kcm_error(status: FccStatus, text: str, name: str) -> BundleError:
    return BundleError(status, text + name)


@dataclass
class Device:
    """What lasts from one message to the next: the items stored (by KCM's typed name), the
    device clock mbed.CurrentTime set, and the bootstrap CA recorded at the end of a session."""

    stored: dict[str, Item] = field(default_factory=dict)
    clock: tuple[float, float] | None = None  # (device time set, monotonic time then)
    ca_id: bytes | None = None

    def now(self) -> float:
        """The device time; 0 while mbed.CurrentTime was never set (as pal_osGetTime)."""
        if self.clock is None:
            return 0.0
        return self.clock[0] + time.monotonic() - self.clock[1]

    def config(self, name: str) -> Item | None:
        return self.stored.get(esfs.CONFIG_PREFIX + name)

    def chain(self, name: str) -> list[bytes]:
        """The certificates stored under name: Cert_<name>, then Crt1_<name>, ..."""
        first = self.stored.get(esfs.CERT_PREFIX + name)
        if first is None:
            return []
        certs = [first.content()]
        for index in range(1, MAX_CHAIN):
            item = self.stored.get(f"Crt{index}_{name}")
            if item is None:
                break
            certs.append(item.content())
        return certs

    def keep(self, result: Bundle, item: Item) -> None:
        """Store item (17 if its typed name is taken in this session)."""
        if item.typed in self.stored:
            raise _kcm_error(FccStatus.KCM_FILE_EXIST_ERROR, ALREADY_EXISTS, item.name)
        self.stored[item.typed] = item
        result.items.append(item)


# ---- reading the CBOR -------------------------------------------------------------------------

def _load_pairs(message: bytes) -> list[tuple[Any, Any]]:
    """The top map's (key, value) pairs in order, a key that comes twice kept twice: one whole
    CBOR item, a definite-length map of at most MAX_KEYS keys."""
    stream = io.BytesIO(message)
    decoder = cbor2.CBORDecoder(stream)
    head = message[0] if message else 0
    try:
        if head >> 5 != 5:  # not a map: decode to tell malformed input from another type
            decoder.decode()
            raise BundleError(FccStatus.BUNDLE_ERROR)
        if head == 0xBF:
            decoder.decode()
            raise BundleError(FccStatus.BUNDLE_ERROR)  # indefinite length is not supported
        info = head & 0x1F
        stream.seek(1)
        if info < 24:
            count = info
        elif info <= 27:
            size = 1 << (info - 24)
            count = int.from_bytes(stream.read(size), "big")
        else:
            raise BundleError(FccStatus.BUNDLE_ERROR)
        pairs = []
        for _ in range(min(count, MAX_KEYS + 1)):
            key = decoder.decode()
            pairs.append((key, decoder.decode()))
    except BundleError:
        raise
    except Exception:  # cbor2 raises several unrelated types for malformed input
        raise BundleError(FccStatus.BUNDLE_ERROR) from None
    if count > MAX_KEYS or stream.tell() != len(message):
        raise BundleError(FccStatus.BUNDLE_ERROR)
    return pairs


def _first(pairs: list[tuple[Any, Any]], key: str) -> tuple[bool, Any]:
    for k, v in pairs:
        if k == key:
            return True, v
    return False, None


def _text(value: Any, named: str | None = None) -> str:
    """A text field; a field read with a name to report names it in the error (as FCC's
    fcc_bundle_get_text_string does when given one)."""
    if not isinstance(value, str):
        raise BundleError(FccStatus.BUNDLE_ERROR, GENERAL_ERROR + (named or ""))
    return value


def _named_before(fields: dict[str, Any], field_name: str) -> str | None:
    """The item's Name if it came before field_name (what FCC has read by then), else None."""
    order = list(fields)
    name = fields.get("Name")
    if isinstance(name, str) and order.index("Name") < order.index(field_name):
        return name
    return None


def _fields(entry: Any, known: tuple[str, ...],
            status: FccStatus = FccStatus.NOT_SUPPORTED) -> dict[str, Any]:
    """The fields of one item map, each key read as the first of known it begins."""
    if not isinstance(entry, dict):
        raise BundleError(FccStatus.BUNDLE_ERROR)
    out: dict[str, Any] = {}
    for key, value in entry.items():
        if not isinstance(key, str):
            raise BundleError(FccStatus.BUNDLE_ERROR)
        name = next((k for k in known if k.startswith(key)), None)
        if name is None:
            raise BundleError(status)
        out[name] = value
    return out


def _entries(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise BundleError(FccStatus.BUNDLE_ERROR)
    return value


def _check_name(name: str) -> str:
    # Names become file names in storage: nothing that could leave the storage folder.
    if len(name) > MAX_NAME or "/" in name or "\0" in name or name in (".", ".."):
        raise BundleError(FccStatus.INVALID_PARAMETER, GENERAL_ERROR)
    return name


# ---- the groups -------------------------------------------------------------------------------

def _key(entry: Any, device: Device, result: Bundle) -> None:
    fields = _fields(entry, ("Name", "Type", "Format", "Data"))
    if "Name" not in fields or "Type" not in fields:
        raise BundleError(FccStatus.BUNDLE_ERROR)
    name = _check_name(_text(fields["Name"]))
    kind = _text(fields["Type"])
    if "ECCPrivate".startswith(kind):
        key_type = "ECCPrivate"
    elif "ECCPublic".startswith(kind):
        key_type = "ECCPublic"
    else:
        raise BundleError(FccStatus.NOT_SUPPORTED)
    if not "der".startswith(_text(fields.get("Format", "-"))):
        raise BundleError(FccStatus.NOT_SUPPORTED)
    data = fields.get("Data", b"")
    if not isinstance(data, bytes):
        raise BundleError(FccStatus.BUNDLE_ERROR)
    if not data:
        raise _kcm_error(FccStatus.KCM_STORAGE_ERROR, DATA_EMPTY, name)
    load = x509.load_private_key if key_type == "ECCPrivate" else x509.load_public_key
    if load(data) is None:
        raise _kcm_error(FccStatus.KCM_CRYPTO_ERROR, KEY_INVALID, name)
    device.keep(result, Item("Keys", name, data, key_type))


def _certificate(entry: Any, device: Device, result: Bundle, chain: bool) -> None:
    data_field = "DataArray" if chain else "Data"
    fields = _fields(entry, ("Name", "PrKN", "Format", data_field))
    if "Name" in fields:
        _text(fields["Name"])
    for text_field in ("PrKN", "Format"):
        if text_field in fields:
            _text(fields[text_field], _named_before(fields, text_field))
    certs: list[Any] = []
    if data_field in fields:
        named = _named_before(fields, data_field)
        certs = _entries(fields[data_field]) if chain else [fields[data_field]]
        if chain and not 0 < len(certs) <= MAX_CHAIN:
            raise BundleError(FccStatus.BUNDLE_ERROR)
        if not all(isinstance(c, bytes) for c in certs):
            raise BundleError(FccStatus.BUNDLE_ERROR, GENERAL_ERROR + (named or ""))
    name = fields.get("Name")
    if name is None or not certs:
        raise BundleError(FccStatus.BUNDLE_ERROR)
    name = _check_name(name)
    if not "der".startswith(fields.get("Format") or "-"):
        raise BundleError(FccStatus.NOT_SUPPORTED)
    if "PrKN" in fields:
        key_name = fields["PrKN"]
        key_item = device.stored.get(esfs.PRIVATE_KEY_PREFIX + key_name)
        # KCM names what failed: the missing key, or the certificate (KCM's own texts).
        if key_item is None:
            raise _kcm_error(FccStatus.CERTIFICATE_PUBLIC_KEY_CORRELATION_ERROR,
                             STATUS_TEXT[FccStatus.ITEM_NOT_EXIST], key_name)
        cert = x509.load_certificate(certs[0])
        key = x509.load_private_key(key_item.content())
        if cert is None or key is None or not x509.matches(cert, key):
            raise _kcm_error(FccStatus.CERTIFICATE_PUBLIC_KEY_CORRELATION_ERROR, SELF_CHECK, name)
    if any(not der for der in certs):
        raise _kcm_error(FccStatus.KCM_STORAGE_ERROR, DATA_EMPTY, name)
    parsed = [x509.load_certificate(der) for der in certs]
    if any(cert is None for cert in parsed):
        raise _kcm_error(FccStatus.KCM_CRYPTO_ERROR, CERT_INVALID, name)
    items = [Item("Certificates", name, der, prefix=f"Crt{index}_" if index else None,
                  chain=len(certs) if chain and not index else 0)
             for index, der in enumerate(certs)]
    for index, (cert, issuer) in enumerate(zip(parsed, parsed[1:])):
        assert cert is not None and issuer is not None
        if not x509.issued_by(cert, issuer):
            # KCM writes a chain as it goes: what it wrote before the bad link stays in
            # BACKUP only (the copy to WORKING comes when the chain is closed).
            result.backup_only += items[:index + 1]
            raise _kcm_error(FccStatus.KCM_CRYPTO_ERROR, CHAIN_INVALID, name)
    for item in items:
        device.keep(result, item)


def _config(entry: Any, device: Device, result: Bundle) -> None:
    fields = _fields(entry, ("Name", "Data"))
    if "Name" not in fields:
        raise BundleError(FccStatus.BUNDLE_ERROR)
    name = _check_name(_text(fields["Name"]))
    data = fields.get("Data")
    # bool is an int subclass in Python but a distinct CBOR type the FCC rejects.
    if isinstance(data, bool) or not isinstance(data, (bytes, str, int)) or \
            (isinstance(data, int) and not -(1 << 63) <= data < (1 << 64)):
        named = _named_before(fields, "Data") if "Data" in fields else None
        raise BundleError(FccStatus.BUNDLE_ERROR, GENERAL_ERROR + (named or ""))
    if CURRENT_TIME.startswith(name):
        # mbed.CurrentTime sets the device clock and is not stored.
        if isinstance(data, int):
            device.clock = (float(data), time.monotonic())
        return
    device.keep(result, Item("ConfigParams", name, data))


def _flag(value: Any, group: str, status: FccStatus = FccStatus.BUNDLE_ERROR) -> bool:
    # bool is an int subclass in Python but a distinct CBOR type the FCC rejects.
    if isinstance(value, bool) or value not in (0, 1):
        raise BundleError(status, GENERAL_ERROR + group)
    return bool(value)


def _take(result: Bundle, group: str, value: Any, device: Device) -> Any:
    """Process one top-level key's value into result, as the FCC's key loop does."""
    if group == "Keys":
        for entry in _entries(value):
            _key(entry, device, result)
    elif group in ("Certificates", "CertificateChains"):
        for entry in _entries(value):
            _certificate(entry, device, result, group == "CertificateChains")
    elif group == "ConfigParams":
        for entry in _entries(value):
            _config(entry, device, result)
    elif group == "Verify":
        result.verify = _flag(value, group)
    elif group == "Disable":
        result.disable = _flag(value, group)
    elif group == "KpAlvSess":
        result.keep_alive = _flag(value, group,
                                  FccStatus.BUNDLE_INVALID_KEEP_ALIVE_SESSION_STATUS)
    elif group == "SID":
        result.sid = _text(value, group)


def _csrs(value: Any, device: Device, result: Bundle) -> None:
    """CSR requests: a new key stored under PrKN for each, and its CSR for the answer."""
    try:
        requests = _entries(value)
        if len(requests) > MAX_CSRS:
            raise BundleError(FccStatus.TOO_MANY_CSR_REQUESTS)
        for request in requests:
            fields = _fields(request, ("PrKN", "Ext", "Subj", "MD", "SM"))
            if "Ext" in fields and not isinstance(fields["Ext"], dict):
                raise BundleError(FccStatus.BUNDLE_ERROR)
            digest = fields.get("MD", 0)
            if isinstance(digest, bool) or not isinstance(digest, int) or digest < 0:
                raise BundleError(FccStatus.BUNDLE_ERROR)
            if "PrKN" not in fields or "Subj" not in fields or digest == 0:
                raise BundleError(FccStatus.BUNDLE_ERROR)
            name = _check_name(_text(fields["PrKN"]))
            made = x509.csr(_text(fields["Subj"]))
            if made is None:
                raise BundleError(FccStatus.KCM_CRYPTO_ERROR)
            if esfs.PRIVATE_KEY_PREFIX + name in device.stored:
                raise BundleError(FccStatus.KCM_FILE_EXIST_ERROR)
            device.keep(result, Item("Keys", name, made[0], "ECCPrivate"))
            result.csrs.append((name, made[1]))
    except BundleError as e:
        # CSR errors name no item (fcc_bundle_process_csr_reqs stores them without a name).
        raise error(e.status) from None


def process(message: bytes, device: Device) -> Bundle:
    """Process a request as the FCC does, storing its items in device; BundleError (with
    .partial: what was taken before the error) says why it is refused."""
    result = Bundle()
    try:
        pairs = _load_pairs(message)
        found, scheme = _first(pairs, "SchemeVersion")
        if isinstance(scheme, bytes):
            scheme = scheme.decode("utf-8", "replace")
        if not found or scheme != SCHEME_VERSION:
            raise BundleError(FccStatus.BUNDLE_INVALID_SCHEME)
        # Named after the storage items they fill (storage_kcm.h).
        for name, size, item in (("Entropy", ENTROPY_SIZE, "entropy"), ("ROT", ROT_SIZE, "rot")):
            found, value = _first(pairs, name)
            if found and not isinstance(value, bytes):
                raise BundleError(FccStatus.BUNDLE_ERROR)
            if found and len(value) != size:
                raise BundleError(FccStatus.INVALID_PARAMETER, GENERAL_ERROR + item)
        csr_requests: Any = None
        for key, value in pairs:
            if not isinstance(key, str):
                raise BundleError(FccStatus.BUNDLE_ERROR)
            group = next((g for g in GROUP_ORDER if g.startswith(key)), None)
            if group is None:
                raise BundleError(FccStatus.BUNDLE_INVALID_GROUP)
            if group == "CsrReqs":
                csr_requests = value
            else:
                _take(result, group, value, device)
        result.complete = True
        if result.disable and result.keep_alive:
            raise BundleError(FccStatus.BUNDLE_INVALID_KEEP_ALIVE_SESSION_STATUS)
        if csr_requests is not None:
            if result.sid is None or result.verify or result.disable:
                raise BundleError(FccStatus.BUNDLE_ERROR)
            _csrs(csr_requests, device, result)
        if not result.keep_alive:
            result.warnings = end_session(device)
        if result.verify:
            result.warnings = verify(device)
    except BundleError as e:
        e.partial = result
        raise
    return result


# ---- the end of a session and Verify ----------------------------------------------------------

def _bootstrap_mode(device: Device, warnings: list[str]) -> bool:
    item = device.config("mbed.UseBootstrap")
    name = "mbed.UseBootstrap"
    if item is None:
        raise error(FccStatus.ITEM_NOT_EXIST, name, warnings)
    content = item.content()
    if len(content) != 4:
        raise error(FccStatus.WRONG_ITEM_DATA_SIZE, name, warnings)
    value = int.from_bytes(content, "little")
    if value not in (0, 1):
        raise error(FccStatus.BOOTSTRAP_MODE_ERROR, name, warnings)
    if value == 0:
        warnings.append(BOOTSTRAP_OFF + name)
    return value == 1


def end_session(device: Device) -> list[str]:
    """The last message of a session records the bootstrap CA (25 when it is missing)."""
    warnings: list[str] = []
    if _bootstrap_mode(device, warnings):
        certs = device.chain("mbed.BootstrapServerCACert")
        cert = x509.load_certificate(certs[0]) if certs else None
        if cert is None:
            raise error(FccStatus.ITEM_NOT_EXIST, "mbed.BootstrapServerCACert", warnings)
        device.ca_id = certs[0]
    return warnings


def _utc_offset_ok(value: str) -> bool:
    """±HH:MM, checked character by character as fcc_verification.c does."""
    return (len(value) >= 6 and value[0] in "+-" and value[3] == ":"
            and all(value[i].isdigit() and value[i].isascii() for i in (1, 2, 4, 5)))


def _expiry(cert: Any, name: str, device: Device, warnings: list[str]) -> None:
    now = device.now()
    if now == 0:
        warnings.append(NO_CLOCK + name)
        return
    start, end = x509.validity(cert)
    if now > end:
        raise error(FccStatus.EXPIRED_CERTIFICATE, name, warnings)
    if now + CLOCK_SLACK < start:
        warnings.append(NO_CLOCK + name)
    if end - now < TEN_YEARS:
        warnings.append(UNDER_TEN_YEARS + name)


def _present(device: Device, typed: str, name: str, warnings: list[str]) -> None:
    if typed in device.stored:
        warnings.append(REDUNDANT + name)


def _device_credentials(device: Device, mode: str, other: str, warnings: list[str]) -> None:
    key_name, cert_name = f"mbed.{mode}DevicePrivateKey", f"mbed.{mode}DeviceCert"
    key_item = device.stored.get(esfs.PRIVATE_KEY_PREFIX + key_name)
    if key_item is None:
        raise error(FccStatus.ITEM_NOT_EXIST, key_name, warnings)
    _present(device, esfs.PRIVATE_KEY_PREFIX + f"mbed.{other}DevicePrivateKey",
             f"mbed.{other}DevicePrivateKey", warnings)
    certs = device.chain(cert_name)
    if not certs:
        raise error(FccStatus.ITEM_NOT_EXIST, cert_name, warnings)
    cert = x509.load_certificate(certs[0])
    key = x509.load_private_key(key_item.content())
    if cert is None or key is None or not x509.matches(cert, key):
        raise error(FccStatus.CERTIFICATE_PUBLIC_KEY_CORRELATION_ERROR, cert_name, warnings)
    _present(device, esfs.CERT_PREFIX + f"mbed.{other}DeviceCert", f"mbed.{other}DeviceCert",
             warnings)
    if not x509.client_auth_allowed(cert):
        raise error(FccStatus.INVALID_CERTIFICATE, cert_name, warnings)
    endpoint = device.config("mbed.EndpointName")
    if endpoint is None or x509.common_name(cert) != endpoint.content():
        raise error(FccStatus.INVALID_LWM2M_CN_ATTR, cert_name, warnings)
    if x509.self_signed(cert):
        warnings.append(SELF_SIGNED + cert_name)
    for der in certs:
        later = x509.load_certificate(der)
        if later is not None:
            _expiry(later, cert_name, device, warnings)


def verify(device: Device) -> list[str]:
    """FCC's Verify over everything stored in the session: the warnings, or BundleError
    (carrying the warnings gathered before it), in fcc_verify_device_configured_4mbed_cloud's
    order."""
    warnings: list[str] = []
    if device.now() == 0:
        warnings.append(NOT_SET + CURRENT_TIME)
    zone = device.config("mbed.Timezone")
    if zone is None or not zone.content():
        warnings.append(NOT_SET + "mbed.Timezone")
    offset = device.config("mbed.UTCOffset")
    if offset is None or not offset.content():
        warnings.append(NOT_SET + "mbed.UTCOffset")
    elif not _utc_offset_ok(offset.content().decode("utf-8", "replace")):
        raise error(FccStatus.UTC_OFFSET_WRONG_FORMAT, "mbed.UTCOffset", warnings)
    bootstrap = _bootstrap_mode(device, warnings)
    endpoint = device.config("mbed.EndpointName")
    if endpoint is None:
        raise error(FccStatus.ITEM_NOT_EXIST, "mbed.EndpointName", warnings)
    if not endpoint.content():
        raise error(FccStatus.EMPTY_ITEM, "mbed.EndpointName", warnings)
    for name in META_DATA:
        if device.config(name) is None:
            raise error(FccStatus.ITEM_NOT_EXIST, name, warnings)
    mode, other = ("Bootstrap", "LwM2M") if bootstrap else ("LwM2M", "Bootstrap")
    ca_name = f"mbed.{mode}ServerCACert"
    ca = device.chain(ca_name)
    if not ca:
        raise error(FccStatus.ITEM_NOT_EXIST, ca_name, warnings)
    _present(device, esfs.CERT_PREFIX + f"mbed.{other}ServerCACert", f"mbed.{other}ServerCACert",
             warnings)
    if bootstrap and device.ca_id != ca[0]:
        warnings.append(CA_ID_UNSET + ca_name)
    uri_name = f"mbed.{mode}ServerURI"
    uri = device.config(uri_name)
    if uri is None:
        raise error(FccStatus.ITEM_NOT_EXIST, uri_name, warnings)
    if not uri.content().startswith(b"coaps://"):
        raise error(FccStatus.URI_WRONG_FORMAT, uri_name, warnings)
    _device_credentials(device, mode, other, warnings)
    update = device.chain("mbed.UpdateAuthCert")
    if not update:
        warnings.append(NOT_SET + "mbed.UpdateAuthCert")
    for der in update:
        cert = x509.load_certificate(der)
        if cert is not None:
            _expiry(cert, "mbed.UpdateAuthCert", device, warnings)
    for name in UUID_ITEMS:
        item = device.config(name)
        if item is None:
            warnings.append(NOT_SET + name)
        elif len(item.content()) != UUID_SIZE:
            raise error(FccStatus.WRONG_ITEM_DATA_SIZE, name, warnings)
    return warnings
