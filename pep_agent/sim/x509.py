"""DER encoding of P-256 private keys and X.509 certificates for the simulators. No side effects.

The pep server simulator injects a real key pair and a real certificate chain (a per-process
bootstrap CA signs each device certificate), so anything downstream that parses them, and the
enrollment id derived from the certificate, behaves as with a production bundle.
"""

from __future__ import annotations

import datetime
import hashlib
import secrets
from dataclasses import dataclass

from pep_agent.sim import p256

_OID_EC_PUBLIC_KEY = "1.2.840.10045.2.1"
_OID_PRIME256V1 = "1.2.840.10045.3.1.7"
_OID_ECDSA_SHA256 = "1.2.840.10045.4.3.2"
_OID_CN = "2.5.4.3"
_OID_O = "2.5.4.10"
_OID_OU = "2.5.4.11"
_OID_BASIC_CONSTRAINTS = "2.5.29.19"
_OID_KEY_USAGE = "2.5.29.15"


def _tlv(tag: int, body: bytes) -> bytes:
    n = len(body)
    if n < 0x80:
        return bytes([tag, n]) + body
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size + body


def seq(*items: bytes) -> bytes:
    return _tlv(0x30, b"".join(items))


def der_int(value: int) -> bytes:
    # Two's complement: a leading 0x00 keeps a positive value with its top bit set positive.
    body = value.to_bytes(value.bit_length() // 8 + 1, "big")
    return _tlv(0x02, body)


def der_oid(dotted: str) -> bytes:
    parts = [int(p) for p in dotted.split(".")]
    out = bytearray([40 * parts[0] + parts[1]])
    for part in parts[2:]:
        chunk = [part & 0x7F]
        part >>= 7
        while part:
            chunk.append(0x80 | (part & 0x7F))
            part >>= 7
        out.extend(reversed(chunk))
    return _tlv(0x06, bytes(out))


def _bit_string(data: bytes) -> bytes:
    return _tlv(0x03, b"\x00" + data)


def _explicit(number: int, body: bytes) -> bytes:
    return _tlv(0xA0 | number, body)


def _time(moment: datetime.datetime) -> bytes:
    # RFC 5280: UTCTime up to 2049, GeneralizedTime from 2050 on.
    if moment.year < 2050:
        return _tlv(0x17, moment.strftime("%y%m%d%H%M%SZ").encode())
    return _tlv(0x18, moment.strftime("%Y%m%d%H%M%SZ").encode())


def _name(*attributes: tuple[str, str]) -> bytes:
    rdns = [_tlv(0x31, seq(der_oid(oid), _tlv(0x0C, value.encode()))) for oid, value in attributes]
    return seq(*rdns)


def _public_key_bytes(point: p256.Point) -> bytes:
    return b"\x04" + point[0].to_bytes(32, "big") + point[1].to_bytes(32, "big")


@dataclass(frozen=True)
class KeyPair:
    """A P-256 key pair; `private_der` is an RFC 5915 ECPrivateKey."""

    private: int
    public: p256.Point

    @classmethod
    def generate(cls) -> KeyPair:
        d = p256.new_private_key()
        return cls(d, p256.multiply(d))

    @property
    def private_der(self) -> bytes:
        return seq(
            der_int(1),
            _tlv(0x04, self.private.to_bytes(32, "big")),
            _explicit(0, der_oid(_OID_PRIME256V1)),
            _explicit(1, _bit_string(_public_key_bytes(self.public))),
        )

    @property
    def public_der(self) -> bytes:
        """SubjectPublicKeyInfo."""
        algorithm = seq(der_oid(_OID_EC_PUBLIC_KEY), der_oid(_OID_PRIME256V1))
        return seq(algorithm, _bit_string(_public_key_bytes(self.public)))


def certificate(subject_key: KeyPair, subject: list[tuple[str, str]], issuer_key: KeyPair,
                issuer: list[tuple[str, str]], *, ca: bool) -> bytes:
    """A v3 X.509 certificate in DER for subject_key, signed with issuer_key."""
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    not_before = now - datetime.timedelta(days=1)
    # RFC 5280's "no well-defined expiration date", as device certificates commonly use.
    not_after = datetime.datetime(9999, 12, 31, 23, 59, 59, tzinfo=datetime.timezone.utc)
    # keyCertSign|cRLSign for the CA, digitalSignature for the device.
    key_usage = b"\x01\x06" if ca else b"\x07\x80"
    extensions = [
        seq(der_oid(_OID_KEY_USAGE), _tlv(0x01, b"\xff"), _tlv(0x04, _tlv(0x03, key_usage))),
    ]
    if ca:
        constraints = seq(_tlv(0x01, b"\xff"))
        extensions.insert(0, seq(der_oid(_OID_BASIC_CONSTRAINTS), _tlv(0x01, b"\xff"),
                                 _tlv(0x04, constraints)))
    signature_algorithm = seq(der_oid(_OID_ECDSA_SHA256))
    tbs = seq(
        _explicit(0, der_int(2)),
        der_int(secrets.randbits(127) | 1 << 126),
        signature_algorithm,
        _name(*issuer),
        seq(_time(not_before), _time(not_after)),
        _name(*subject),
        subject_key.public_der,
        _explicit(3, seq(*extensions)),
    )
    r, s = p256.sign(issuer_key.private, tbs)
    return seq(tbs, signature_algorithm, _bit_string(seq(der_int(r), der_int(s))))


@dataclass(frozen=True)
class Authority:
    """The simulated bootstrap CA that signs device certificates."""

    key: KeyPair
    name: list[tuple[str, str]]
    cert_der: bytes

    @classmethod
    def generate(cls, common_name: str = "pep-sim bootstrap CA") -> Authority:
        key = KeyPair.generate()
        name = [(_OID_O, "pep-sim"), (_OID_CN, common_name)]
        return cls(key, name, certificate(key, name, key, name, ca=True))

    def issue(self, endpoint_name: str, account_id: str) -> tuple[KeyPair, bytes]:
        """A new device key pair and its certificate (CN = endpoint, OU = account)."""
        key = KeyPair.generate()
        subject = [(_OID_OU, account_id), (_OID_CN, endpoint_name)]
        return key, certificate(key, subject, self.key, self.name, ca=False)


def enrollment_id(cert_der: bytes) -> str:
    """The 97-character enrollment id: "A-" and the certificate's SHA-256 as hex pairs."""
    digest = hashlib.sha256(cert_der).hexdigest()
    return "A-" + ":".join(digest[i:i + 2] for i in range(0, 64, 2))
