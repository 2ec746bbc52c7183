"""Keys and certificates FCC's parser refuses and `cryptography` raises on rather than reading,
written here in DER by hand (the library will not make them). No side effects.

- A key on prime239v1 (ANSI X9.62): a curve OpenSSL knows but `cryptography` does not (it
  raises UnsupportedAlgorithm), and that FCC's mbedtls, built for P-256, does not either. Its
  private key is 1, so its public key is the curve's generator.
- A certificate whose version is 4 (the field holds 3): `cryptography` raises InvalidVersion.

Needs `cryptography` (to sign the changed certificates).
"""

from __future__ import annotations

from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from pep_agent.sim.der import encode as der

# 1.2.840.10045.2.1 (id-ecPublicKey) and 1.2.840.10045.3.1.4 (prime239v1).
EC_PUBLIC_KEY = bytes.fromhex("06072a8648ce3d0201")
PRIME239V1 = bytes.fromhex("06082a8648ce3d030104")
# prime239v1's generator, uncompressed (X9.62).
GENERATOR = bytes.fromhex(
    "040ffa963cdca8816ccc33b8642bedf905c3d358573d3f27fbbd3b3cb9aaaf"
    "7debe8e4e90a5dae6e4054ca530ba04654b36818ce226b39fccb7b02f1ae")
PRIVATE_SIZE = 30  # bytes of a prime239v1 scalar
# AlgorithmIdentifier ecdsa-with-SHA256 (1.2.840.10045.4.3.2).
ECDSA_SHA256 = bytes.fromhex("300a06082a8648ce3d040302")
VERSION_3 = bytes.fromhex("a003020102")


def content_of(element: bytes) -> bytes:
    """The content of the DER element that is all of element."""
    size = element[1]
    start = 2 + (size & 0x7F if size & 0x80 else 0)
    return element[start:]


def _ec_private_key(*, curve: bool) -> bytes:
    """RFC 5915 ECPrivateKey on prime239v1 with private key 1 (the curve named or not)."""
    parts = der(0x02, b"\x01") + der(0x04, (1).to_bytes(PRIVATE_SIZE, "big"))
    if curve:
        parts += der(0xA0, PRIME239V1)
    return der(0x30, parts + der(0xA1, der(0x03, b"\0" + GENERATOR)))


def private_key() -> bytes:
    """A prime239v1 private key as RFC 5915 ECPrivateKey, the form FCC stores."""
    return _ec_private_key(curve=True)


def private_key_pkcs8() -> bytes:
    """The same key in PKCS#8."""
    algorithm = der(0x30, EC_PUBLIC_KEY + PRIME239V1)
    return der(0x30, der(0x02, b"\0") + algorithm + der(0x04, _ec_private_key(curve=False)))


def public_key() -> bytes:
    """Its public key as SubjectPublicKeyInfo."""
    return der(0x30, der(0x30, EC_PUBLIC_KEY + PRIME239V1) + der(0x03, b"\0" + GENERATOR))


def _signed(tbs_content: bytes, issuer_key: Any) -> bytes:
    tbs = der(0x30, tbs_content)
    signature = issuer_key.sign(tbs, ec.ECDSA(hashes.SHA256()))
    return der(0x30, tbs + ECDSA_SHA256 + der(0x03, b"\0" + signature))


def _tbs_content(cert_der: bytes) -> bytes:
    return content_of(x509.load_der_x509_certificate(cert_der).tbs_certificate_bytes)


def with_prime239v1_key(cert_der: bytes, issuer_key: Any) -> bytes:
    """cert_der (an ECDSA-SHA256 certificate) for the prime239v1 key, signed again by
    issuer_key."""
    spki = x509.load_der_x509_certificate(cert_der).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    tbs = _tbs_content(cert_der)
    assert tbs.count(spki) == 1
    return _signed(tbs.replace(spki, public_key()), issuer_key)


def with_version_4(cert_der: bytes, issuer_key: Any) -> bytes:
    """cert_der (a v3 ECDSA-SHA256 certificate) with version 4, signed again by issuer_key."""
    tbs = _tbs_content(cert_der)
    assert tbs.startswith(VERSION_3)
    return _signed(b"\xa0\x03\x02\x01\x03" + tbs[len(VERSION_3):], issuer_key)


def _elements(blob: bytes) -> list[bytes]:
    """Each whole DER element in blob, one after another."""
    out = []
    while blob:
        size, start = blob[1], 2
        if size & 0x80:
            start += size & 0x7F
            size = int.from_bytes(blob[2:start], "big")
        out.append(blob[:start + size])
        blob = blob[start + size:]
    return out


def with_first_extension_twice(cert_der: bytes, issuer_key: Any) -> bytes:
    """cert_der (a v3 ECDSA-SHA256 certificate with extensions) with its first extension
    written twice, signed again by issuer_key."""
    fields = _elements(_tbs_content(cert_der))
    assert fields[-1][0] == 0xA3
    extensions = _elements(content_of(content_of(fields[-1])))
    twice = der(0xA3, der(0x30, extensions[0] + b"".join(extensions)))
    return _signed(b"".join(fields[:-1]) + twice, issuer_key)
