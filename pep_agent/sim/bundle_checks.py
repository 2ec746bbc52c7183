"""FCC's processing of a request bundle, and its Verify, as the real FCC makes them. No side
effects beyond the Device state it is given (the items it counts as stored, its clock).

This module reads the request's top map and runs its keys in FCC's order; the items of each
group are checked in bundle_items, the end of a session and Verify in bundle_verify, and the
texts FCC answers with are in bundle_messages.

Follows mbed-cloud-client 4.10.0 (fcc_bundle_handler.c and the key-config-manager checks):
- the request is a definite-length map of at most 12 text keys (a key may come twice: each
  value is processed); SchemeVersion is checked first (24), then the keys in order. A key
  selects the first group whose name it begins (strncmp over the key's length), as do the
  fields of each item; a key that begins no group is 23, a field no item knows is 37.
- items are stored as they are read, so those before an error stay stored. Each is checked as
  KCM stores it: a certificate must parse as X.509 with a P-256 key and a key must be a P-256
  key (else 18, its text naming an EC key on another curve, or a public key not EC), only the
  der format is taken (37), an item already stored in the session is 17, an empty key or
  certificate is 16. A chain is stored as Cert_<name>, Crt1_<name>, ... and each certificate
  must be signed by the next. What `cryptography` raises on (an unknown curve, an X.509 version
  it does not know, an extension twice) is refused like any unparsable item.
- flags are the integers 0 or 1 (CBOR true/false is 20, a bad KpAlvSess 35); SID counts as read
  only once its key was reached. KpAlvSess counts only when every key was processed.
- after the keys: Disable in a kept-alive message is 35; CSR requests need a SID and neither
  Verify nor Disable (20) and get a new P-256 key each, their subjects read as KCM reads them
  (pep_agent.sim.subject; one it refuses is 18, its key left in BACKUP); the last message needs
  the bootstrap CA
  (25); then Verify, whose warnings go with its error too.

Left out: the factory-disabled state a `Disable: 1` leaves for FCC's next start (the stand-in
exits after the session, and its next start erases storage), the LwM2M OU/aid comparison,
Entropy and ROT contents beyond their size, and CSR extensions beyond reading them.
"""

from __future__ import annotations

import io
from typing import Any

import cbor2

from pep_agent.sim.bundle import GENERAL_ERROR, SCHEME_VERSION, Bundle, BundleError, FccStatus
from pep_agent.sim.bundle_device import Device
from pep_agent.sim.bundle_items import take_csrs, take_group
from pep_agent.sim.bundle_verify import end_session, verify

# Processing order of the real FCC's key loop (SchemeVersion, Entropy and ROT are handled
# before it); a key selects the first group it is a prefix of.
GROUP_ORDER = ("SchemeVersion", "Entropy", "ROT", "Keys", "Certificates", "CertificateChains",
               "ConfigParams", "Verify", "Disable", "KpAlvSess", "SID", "CsrReqs")
MAX_KEYS = 12
ROT_SIZE = 16
ENTROPY_SIZE = 48


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
                take_group(result, group, value, device)
        result.complete = True
        if result.disable and result.keep_alive:
            raise BundleError(FccStatus.BUNDLE_INVALID_KEEP_ALIVE_SESSION_STATUS)
        if csr_requests is not None:
            if result.sid is None or result.verify or result.disable:
                raise BundleError(FccStatus.BUNDLE_ERROR)
            take_csrs(csr_requests, device, result)
        if not result.keep_alive:
            result.warnings = end_session(device)
        if result.verify:
            result.warnings = verify(device)
    except BundleError as e:
        e.partial = result
        raise
    return result
