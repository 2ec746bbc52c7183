"""P-256 keys and X.509 certificates for the simulators, made with `cryptography`. No side effects.

FCC's own checks of keys and certificates (the ones its key-config-manager makes with mbedtls)
are here too, for the FCC stand-in.

The pep server simulator injects a real key pair and a real certificate chain (a per-process
bootstrap CA signs each device certificate), so anything downstream that parses them, and the
enrollment id derived from the certificate, behaves as with a production bundle.

`cryptography` is the `sim` extra: a gateway image does not need it, so importing this module
without it raises a ConfigError naming the extra instead of an ImportError.
"""

from __future__ import annotations

import datetime
import hashlib
import time
import warnings
from dataclasses import dataclass

from pep_agent.errors import ConfigError

try:
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.name import _ASN1Type  # private, the same from 36 to 51
    from cryptography.x509.oid import NameOID
except ImportError:
    raise ConfigError(
        "the simulated pep server needs the cryptography library (the 'sim' extra)",
        hint="install it: pip install 'pep-agent[sim]' (or the python3-cryptography package)",
    ) from None

from pep_agent.sim.der import KeyFault, certificate_key, key_fault
from pep_agent.sim.subject import IA5, UTF8
from pep_agent.sim.subject import read as read_subject

Name = list[tuple[x509.ObjectIdentifier, str]]
# What cryptography raises on DER it will not read, where FCC answers with a status (so none
# may escape): malformed (ValueError, TypeError), a key algorithm or curve it does not know
# (UnsupportedAlgorithm), an X.509 version other than 1 and 3 (InvalidVersion), and when the
# extensions are read, one twice (DuplicateExtension) or a general name of a kind it does not
# know (UnsupportedGeneralNameType). All are in cryptography from 36 to 51.
UNREADABLE = (ValueError, TypeError, UnsupportedAlgorithm, x509.InvalidVersion,
              x509.DuplicateExtension, x509.UnsupportedGeneralNameType)


@dataclass(frozen=True)
class KeyPair:
    """A P-256 key pair; `private_der` is an RFC 5915 ECPrivateKey, as FCC stores it."""

    private: ec.EllipticCurvePrivateKey

    @classmethod
    def generate(cls) -> KeyPair:
        return cls(ec.generate_private_key(ec.SECP256R1()))

    @property
    def private_der(self) -> bytes:
        return self.private.private_bytes(serialization.Encoding.DER,
                                          serialization.PrivateFormat.TraditionalOpenSSL,
                                          serialization.NoEncryption())

    @property
    def public_der(self) -> bytes:
        """SubjectPublicKeyInfo."""
        return self.private.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _name(attributes: Name) -> x509.Name:
    return x509.Name([x509.NameAttribute(oid, value) for oid, value in attributes])


def certificate(subject_key: KeyPair, subject: Name, issuer_key: KeyPair, issuer: Name, *,
                ca: bool) -> bytes:
    """A v3 X.509 certificate in DER for subject_key, signed with issuer_key (ECDSA-SHA256)."""
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    usage = {name: False for name in ("digital_signature", "content_commitment",
                                      "key_encipherment", "data_encipherment", "key_agreement",
                                      "key_cert_sign", "crl_sign", "encipher_only",
                                      "decipher_only")}
    # keyCertSign|cRLSign for the CA, digitalSignature for the device.
    usage.update(key_cert_sign=ca, crl_sign=ca, digital_signature=not ca)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(subject_key.private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        # RFC 5280's "no well-defined expiration date", as device certificates commonly use.
        .not_valid_after(datetime.datetime(9999, 12, 31, 23, 59, 59,
                                           tzinfo=datetime.timezone.utc))
        .add_extension(x509.KeyUsage(**usage), critical=True)
    )
    if ca:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None),
                                        critical=True)
    cert = builder.sign(issuer_key.private, hashes.SHA256())
    return cert.public_bytes(serialization.Encoding.DER)


@dataclass(frozen=True)
class Authority:
    """The simulated bootstrap CA that signs device certificates."""

    key: KeyPair
    name: Name
    cert_der: bytes

    @classmethod
    def generate(cls, common_name: str = "pep-sim bootstrap CA") -> Authority:
        key = KeyPair.generate()
        name: Name = [(NameOID.ORGANIZATION_NAME, "pep-sim"), (NameOID.COMMON_NAME, common_name)]
        return cls(key, name, certificate(key, name, key, name, ca=True))

    def issue(self, endpoint_name: str, account_id: str) -> tuple[KeyPair, bytes]:
        """A new device key pair and its certificate (CN = endpoint, OU = account)."""
        key = KeyPair.generate()
        subject: Name = [(NameOID.ORGANIZATIONAL_UNIT_NAME, account_id),
                         (NameOID.COMMON_NAME, endpoint_name)]
        return key, certificate(key, subject, self.key, self.name, ca=False)


def enrollment_id(cert_der: bytes) -> str:
    """The 97-character enrollment id: "A-" and the certificate's SHA-256 as hex pairs."""
    digest = hashlib.sha256(cert_der).hexdigest()
    return "A-" + ":".join(digest[i:i + 2] for i in range(0, 64, 2))


# ---- what FCC's key-config-manager checks (mbedtls built with elliptic curves only) ----------

# The buffer KCM stores a generated P-256 private key in (cs_der_keys_and_csrs.h): the DER is
# written at its end, as mbedtls writes DER backwards, and the whole buffer is stored.
GENERATED_KEY_SIZE = 150


def _p256(key: object) -> bool:
    return isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)) \
        and isinstance(key.curve, ec.SECP256R1)


def load_certificate(der: bytes) -> x509.Certificate | None:
    """The certificate in der if FCC could parse it: DER X.509 with a P-256 key and a signature
    algorithm cryptography knows; else None."""
    try:
        cert = x509.load_der_x509_certificate(der)
        key = cert.public_key()
        # mbedtls refuses to parse a certificate whose signature algorithm it does not know, or
        # with an extension twice; cryptography finds out only when they are read.
        cert.signature_hash_algorithm  # noqa: B018 (read for what it raises)
        cert.extensions  # noqa: B018
    except UNREADABLE:
        return None
    return cert if _p256(key) else None


def load_private_key(der: bytes) -> ec.EllipticCurvePrivateKey | None:
    """The P-256 private key in der (RFC 5915 or PKCS#8), or None."""
    try:
        key = serialization.load_der_private_key(der, password=None)
    except UNREADABLE:
        return None
    return key if isinstance(key, ec.EllipticCurvePrivateKey) and _p256(key) else None


def load_public_key(der: bytes) -> ec.EllipticCurvePublicKey | None:
    """The P-256 public key in der (SubjectPublicKeyInfo), or None."""
    try:
        key = serialization.load_der_public_key(der)
    except UNREADABLE:
        return None
    return key if isinstance(key, ec.EllipticCurvePublicKey) and _p256(key) else None


def public_key_fault(der: bytes) -> KeyFault | None:
    """None if FCC stores der as a public key, else why not."""
    return None if load_public_key(der) is not None else key_fault(der)


def certificate_fault(der: bytes) -> KeyFault | None:
    """None if FCC stores der as a certificate, else why not: CURVE for a certificate that
    parses but whose key is on another curve, FORMAT for the rest (an RSA key too: mbedtls
    without RSA does not parse the certificate)."""
    if load_certificate(der) is not None:
        return None
    try:
        x509.load_der_x509_certificate(der)
    except UNREADABLE:
        return KeyFault.FORMAT
    return KeyFault.CURVE if key_fault(certificate_key(der)) is KeyFault.CURVE else KeyFault.FORMAT


def matches(cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> bool:
    """Whether key is the private key of cert's public key."""
    # Compared as encoded points: cryptography before 41 (kirkstone's 36, bookworm's 38)
    # compares public key objects by identity, so == would refuse every matching pair there.
    def point(k: ec.EllipticCurvePublicKey) -> bytes:
        return k.public_bytes(serialization.Encoding.X962,
                              serialization.PublicFormat.UncompressedPoint)
    public = cert.public_key()
    return (isinstance(public, ec.EllipticCurvePublicKey)
            and point(public) == point(key.public_key()))


def issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """Whether issuer's name and P-256 key signed cert."""
    # Checked by hand rather than with verify_directly_issued_by, which cryptography has only
    # from 40 on: kirkstone ships 36 and bookworm 38.
    try:
        public = issuer.public_key()
        digest = cert.signature_hash_algorithm
        if cert.issuer != issuer.subject or digest is None \
                or not isinstance(public, ec.EllipticCurvePublicKey):
            return False
        public.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(digest))
    except (*UNREADABLE, InvalidSignature):
        return False
    return True


def common_name(cert: x509.Certificate) -> bytes:
    values = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(values[0].value).encode() if values else b""


def self_signed(cert: x509.Certificate) -> bool:
    return cert.issuer == cert.subject and issued_by(cert, cert)


def validity(cert: x509.Certificate) -> tuple[float, float]:
    """(not before, not after) in seconds since the epoch."""
    before = getattr(cert, "not_valid_before_utc", None) or \
        cert.not_valid_before.replace(tzinfo=datetime.timezone.utc)
    after = getattr(cert, "not_valid_after_utc", None) or \
        cert.not_valid_after.replace(tzinfo=datetime.timezone.utc)
    return before.timestamp(), after.timestamp()


def client_auth_allowed(cert: x509.Certificate) -> bool:
    """False only when the certificate has an extended key usage without clientAuth."""
    try:
        usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return True
    return x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH in usage


_PRINTABLE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 '()+,-./:=?")


def _attribute(oid: str, value: str, kind: int) -> x509.NameAttribute[str]:
    # mbedtls writes any value with its label's string type. cryptography checks the value
    # against X.520's lengths (a country code of two letters) unless told not to (it then
    # warns, which here is expected), and from 42 on its characters against the type: a value
    # that does not fit its type is written as UTF8String (where the real FCC writes it as is).
    fits = kind == UTF8 or (value.isascii() and (kind == IA5 or set(value) <= _PRINTABLE))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return x509.NameAttribute(x509.ObjectIdentifier(oid), value,
                                  _type=_ASN1Type(kind if fits else UTF8), _validate=False)


def csr(subject: str) -> tuple[bytes, bytes | None]:
    """(stored private key, CSR in DER) for a subject like "C=US,O=Org,CN=name" (read as KCM
    reads it). The CSR is None if KCM refuses the subject: it has made and stored the key by
    then."""
    key = KeyPair.generate()
    stored = key.private_der.rjust(GENERATED_KEY_SIZE, b"\0")
    attributes = read_subject(subject)
    if attributes is None:
        return stored, None
    name = x509.Name([_attribute(*attribute) for attribute in attributes])
    request = x509.CertificateSigningRequestBuilder().subject_name(name).sign(key.private,
                                                                            hashes.SHA256())
    return stored, request.public_bytes(serialization.Encoding.DER)


def fcc_refusal(der: bytes, now: float | None = None) -> str | None:
    """Why FCC would refuse der as mbed.UpdateAuthCert (a phrase naming its ReturnStatus), or
    None when it would store it: FCC parses it as it stores it, and Verify refuses it expired."""
    cert = load_certificate(der)
    if cert is None:
        return ("FCC cannot parse it as an X.509 certificate with a P-256 (secp256r1) key "
                "(it would answer ReturnStatus 18, 'Certificate parse failed')")
    _, end = validity(cert)
    if (time.time() if now is None else now) > end:
        expired = datetime.datetime.fromtimestamp(end, datetime.timezone.utc)
        return (f"it expired on {expired:%Y-%m-%d %H:%M} UTC (FCC would answer ReturnStatus 13, "
                "'Certificate expired')")
    return None
