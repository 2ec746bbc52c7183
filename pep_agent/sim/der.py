"""What FCC's parser sees of a public key that `cryptography` will not load: its algorithm and
named curve, read from the DER by hand (a SubjectPublicKeyInfo alone or in a certificate).
No side effects.
"""

from __future__ import annotations

from enum import Enum

# The contents of the OIDs id-ecPublicKey (1.2.840.10045.2.1) and secp256r1
# (1.2.840.10045.3.1.7).
EC_PUBLIC_KEY = bytes.fromhex("2a8648ce3d0201")
SECP256R1 = bytes.fromhex("2a8648ce3d030107")
SEQUENCE, OID, VERSION = 0x30, 0x06, 0xA0


def elements(blob: bytes) -> list[tuple[int, bytes]]:
    """(tag, content) of each DER element blob holds, one after another; ValueError when blob
    is not such a run (single-byte tags and definite lengths only, as in X.509)."""
    out = []
    at = 0
    while at < len(blob):
        if at + 2 > len(blob):
            raise ValueError("truncated DER")
        tag, size = blob[at], blob[at + 1]
        at += 2
        if size & 0x80:
            count = size & 0x7F
            if not 0 < count <= 4 or at + count > len(blob):
                raise ValueError("bad DER length")
            size = int.from_bytes(blob[at:at + count], "big")
            at += count
        if at + size > len(blob):
            raise ValueError("truncated DER")
        out.append((tag, blob[at:at + size]))
        at += size
    return out


def _one(blob: bytes, tag: int) -> list[tuple[int, bytes]]:
    """The elements inside blob, which must be exactly one element with tag."""
    outer = elements(blob)
    if len(outer) != 1 or outer[0][0] != tag:
        raise ValueError("not the expected DER element")
    return elements(outer[0][1])


def key_algorithm(spki: bytes) -> tuple[bytes, bytes | None] | None:
    """(algorithm OID, named curve OID or None) of a SubjectPublicKeyInfo; None if spki is not
    one."""
    try:
        fields = _one(spki, SEQUENCE)
        if len(fields) != 2 or fields[0][0] != SEQUENCE:
            return None
        algorithm = elements(fields[0][1])
    except ValueError:
        return None
    if not algorithm or algorithm[0][0] != OID:
        return None
    params = algorithm[1] if len(algorithm) > 1 else None
    return algorithm[0][1], params[1] if params and params[0] == OID else None


def certificate_key(cert: bytes) -> bytes | None:
    """The SubjectPublicKeyInfo of a certificate, re-encoded; None if cert is not shaped as
    one."""
    try:
        tbs = _one(cert, SEQUENCE)[0]
        if tbs[0] != SEQUENCE:
            return None
        fields = elements(tbs[1])
    except (ValueError, IndexError):
        return None
    # version (optional, [0]), serial, signature algorithm, issuer, validity, subject, key.
    start = 1 if fields and fields[0][0] == VERSION else 0
    if len(fields) < start + 6 or fields[start + 5][0] != SEQUENCE:
        return None
    return encode(SEQUENCE, fields[start + 5][1])


class KeyFault(Enum):
    """Why FCC refuses a public key, or a certificate for its key: each has its KCM text."""

    FORMAT = "format"  # not read as a key
    ALGORITHM = "algorithm"  # not an EC key (mbedtls is built for elliptic curves only)
    CURVE = "curve"  # an EC key on a named curve other than P-256


def key_fault(spki: bytes | None) -> KeyFault:
    """Why FCC refuses spki (a SubjectPublicKeyInfo, or None for none)."""
    found = key_algorithm(spki) if spki is not None else None
    if found is None:
        return KeyFault.FORMAT
    algorithm, curve = found
    if algorithm != EC_PUBLIC_KEY:
        return KeyFault.ALGORITHM
    return KeyFault.CURVE if curve not in (None, SECP256R1) else KeyFault.FORMAT


def encode(tag: int, content: bytes) -> bytes:
    """One DER element (definite length)."""
    size = len(content)
    if size < 0x80:
        return bytes([tag, size]) + content
    length = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(length)]) + length + content
