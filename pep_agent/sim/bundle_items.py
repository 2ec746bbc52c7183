"""How FCC reads the items of a request's groups (Keys, Certificates, CertificateChains,
ConfigParams, the flags, SID and CsrReqs) and stores each as KCM does: the field checks, the
X.509 and key parsing, the chain links, and the duplicates (17). No side effects beyond the
Device and Bundle it is given (and reading the monotonic clock when mbed.CurrentTime sets the
device clock).

The rules, and what is left out, are summed up in pep_agent.sim.bundle_checks.
"""

from __future__ import annotations

import time
from typing import Any

from pep_agent.gateway import esfs
from pep_agent.sim import x509
from pep_agent.sim.bundle import GENERAL_ERROR, Bundle, BundleError, FccStatus, Item
from pep_agent.sim.bundle_device import CURRENT_TIME, MAX_CHAIN, Device
from pep_agent.sim.bundle_messages import (
    CERT_INVALID,
    CHAIN_INVALID,
    CURVE_UNSUPPORTED,
    DATA_EMPTY,
    KEY_ALGORITHM_UNKNOWN,
    KEY_INVALID,
    SELF_CHECK,
    STATUS_TEXT,
    error,
    kcm_error,
)
from pep_agent.sim.der import KeyFault

MAX_NAME = 64
MAX_CSRS = 5
# KCM's text for a public key it refuses, and for a certificate it refuses for its key (one
# that does not parse at all, or has a key that is not EC, is CERT_INVALID).
KEY_TEXT = {KeyFault.FORMAT: KEY_INVALID, KeyFault.ALGORITHM: KEY_ALGORITHM_UNKNOWN,
            KeyFault.CURVE: CURVE_UNSUPPORTED}


# ---- the fields of an item --------------------------------------------------------------------

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
        raise kcm_error(FccStatus.KCM_STORAGE_ERROR, DATA_EMPTY, name)
    if key_type == "ECCPrivate":
        # A private key on another curve is as invalid as garbage to KCM.
        fault = None if x509.load_private_key(data) else KeyFault.FORMAT
    else:
        fault = x509.public_key_fault(data)
    if fault is not None:
        raise kcm_error(FccStatus.KCM_CRYPTO_ERROR, KEY_TEXT[fault], name)
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
            raise kcm_error(FccStatus.CERTIFICATE_PUBLIC_KEY_CORRELATION_ERROR,
                             STATUS_TEXT[FccStatus.ITEM_NOT_EXIST], key_name)
        cert = x509.load_certificate(certs[0])
        key = x509.load_private_key(key_item.content())
        if cert is None or key is None or not x509.matches(cert, key):
            raise kcm_error(FccStatus.CERTIFICATE_PUBLIC_KEY_CORRELATION_ERROR, SELF_CHECK, name)
    if any(not der for der in certs):
        raise kcm_error(FccStatus.KCM_STORAGE_ERROR, DATA_EMPTY, name)
    fault = next(filter(None, map(x509.certificate_fault, certs)), None)
    if fault is not None:
        text = CURVE_UNSUPPORTED if fault is KeyFault.CURVE else CERT_INVALID
        raise kcm_error(FccStatus.KCM_CRYPTO_ERROR, text, name)
    parsed = [x509.load_certificate(der) for der in certs]
    items = [Item("Certificates", name, der, prefix=f"Crt{index}_" if index else None,
                  chain=len(certs) if chain and not index else 0)
             for index, der in enumerate(certs)]
    for index, (cert, issuer) in enumerate(zip(parsed, parsed[1:])):
        assert cert is not None and issuer is not None
        if not x509.issued_by(cert, issuer):
            # KCM writes a chain as it goes: what it wrote before the bad link stays in
            # BACKUP only (the copy to WORKING comes when the chain is closed).
            result.backup_only += items[:index + 1]
            raise kcm_error(FccStatus.KCM_CRYPTO_ERROR, CHAIN_INVALID, name)
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


def take_group(result: Bundle, group: str, value: Any, device: Device) -> None:
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


def take_csrs(value: Any, device: Device, result: Bundle) -> None:
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
            key, made = x509.csr(_text(fields["Subj"]))
            if made is None:
                # KCM stores the new key before it reads the subject; the error ends the
                # message before the copy to WORKING.
                result.backup_only.append(Item("Keys", name, key, "ECCPrivate"))
                raise BundleError(FccStatus.KCM_CRYPTO_ERROR)
            if esfs.PRIVATE_KEY_PREFIX + name in device.stored:
                raise BundleError(FccStatus.KCM_FILE_EXIST_ERROR)
            device.keep(result, Item("Keys", name, key, "ECCPrivate"))
            result.csrs.append((name, made))
    except BundleError as e:
        # CSR errors name no item (fcc_bundle_process_csr_reqs stores them without a name);
        # a subject KCM cannot read has the general text, not the crypto error's.
        if e.status is FccStatus.KCM_CRYPTO_ERROR:
            raise BundleError(e.status) from None
        raise error(e.status) from None
