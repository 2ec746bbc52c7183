"""`sim fcc` against the real FCC: the same bytes to both, the same answers, the same files.

Runs only with PEP_REAL_FCC=/path/to/factory-configurator-client-example.elf (built natively by
packaging/real-fcc/build.sh; `make realfcc`). Every probe is built here with cbor2, raw framing
and `cryptography` (not with the project's encoder), so a mistake there cannot hide on both
sides. For each probe both programs start in their own folder on loopback, get the same
actions (writes, pauses, reads, a signal), and must agree on:
- every answer: the comm status or how the connection ended, ReturnStatus, the SID echo,
  WarningInfo, InfoMessage, whether Csrs came back;
- whether FCC keeps running afterwards, or its exit status or signal;
- the files under pal: names, sizes, modes, and each ESFS header (version, mode, name).

The real FCC is the oracle. Differences kept on purpose are listed in KEPT below with their
reason; no probe sends what would make the two differ there. A summary line
"comparison: N alike of N probes" is printed at the end of the session.

Both programs run each probe at the same time. The 65-second pause probe, the longest, is
marked `slow` (`-m "not slow"` leaves it out).
"""

from __future__ import annotations

import datetime
import hashlib
import os
import signal
import socket
import struct
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pep_agent.flow.steps import FCC_STARTS
from tests import unparsable
from tests.simprocs import SimFcc, sim_argv, start_fcc

REAL = os.environ.get("PEP_REAL_FCC")
pytestmark = pytest.mark.skipif(
    not REAL, reason="set PEP_REAL_FCC to a real factory-configurator-client-example "
                     "(packaging/real-fcc/build.sh builds one) to compare it with sim fcc")

cbor2 = pytest.importorskip("cbor2")
pytest.importorskip("cryptography")

from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec, rsa  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402

# Differences kept on purpose, each with its reason (no probe sends what triggers them):
KEPT = {
    "bad checksum after a kept-alive message":
        "the real FCC frees the previous message's buffer twice and aborts (SIGABRT, or worse "
        "on another libc); the simulator exits 1 as after any framing error, the documented "
        "behaviour, instead of imitating memory corruption",
    "stored bytes":
        "the real FCC encrypts with AES-CTR under its device key and signs with AES-CMAC; the "
        "simulator has no device key and uses keyless stand-ins of the same sizes, so names, "
        "sizes, modes and headers match but the bytes and the 8-byte nonces do not",
    "flashSim content":
        "the real FCC writes its root of trust and keys there; the simulator writes random "
        "bytes of the same size, so only the size, mode and 'not erased' are compared",
    "generated keys and CSRs":
        "a CSR's key is generated on each side; only the stored file sizes and the presence "
        "and count of Csrs are compared",
    "a CSR subject value outside its string type's characters":
        "the real FCC writes it with the label's type all the same (a country code 'é' as "
        "PrintableString, an email address with 'é' as IA5String); cryptography from 42 on "
        "refuses to, so the simulator writes such a value as UTF8String",
    "a peer silent for ever":
        "the simulator drops a peer that sends nothing for 10 minutes mid-message (tests need "
        "a bound); the real FCC waits for ever. The 65 s pause probe shows both wait it out",
}

TOKEN = b"mbedprov"
ANSWER_TIMEOUT = 90.0
# How long a program that should keep running is watched before it counts as still running.
RUNNING_GRACE = 1.5
ENTROPY_ENV = "ENTROPYSOURCE=/dev/urandom"


# ---- credentials, made here with cryptography --------------------------------------------

def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)


def _der_key(key: Any) -> bytes:
    return bytes(key.private_bytes(serialization.Encoding.DER,
                                   serialization.PrivateFormat.TraditionalOpenSSL,
                                   serialization.NoEncryption()))


def _cert(key: Any, cn: str, issuer_key: Any, issuer_cn: str, *, ca: bool, days: int = 36500,
          start_days: int = -1, ou: str | None = None, client_auth: bool = False) -> bytes:
    subject = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if ou is not None:
        subject.insert(0, x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, ou))
    now = _now()
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name(subject))
               .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_cn)]))
               .public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now + datetime.timedelta(days=start_days))
               .not_valid_after(now + datetime.timedelta(days=days)))
    if ca:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
    if client_auth:
        builder = builder.add_extension(x509.ExtendedKeyUsage(
            [x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]), False)
    return bytes(builder.sign(issuer_key, hashes.SHA256()).public_bytes(
        serialization.Encoding.DER))


@dataclass
class Creds:
    ca_key: Any = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))
    dev_key: Any = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))
    other_key: Any = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))
    account: str = "0123456789abcdef0123456789abcdef"

    def ca(self, **kw: Any) -> bytes:
        return _cert(self.ca_key, "cmp CA", self.ca_key, "cmp CA", ca=True, **kw)

    def device(self, cn: str = "GW-cmp", **kw: Any) -> bytes:
        return _cert(self.dev_key, cn, self.ca_key, "cmp CA", ca=False, ou=self.account, **kw)


CREDS = Creds() if REAL else None


def creds() -> Creds:
    assert CREDS is not None
    return CREDS


# ---- bundles, built here with cbor2 --------------------------------------------------------

def key_entry(name: str, data: bytes, kind: str = "ECCPrivate", fmt: str = "der") -> dict[str, Any]:
    return {"Name": name, "Type": kind, "Format": fmt, "Data": data}


def cert_entry(name: str, data: bytes, fmt: str = "der") -> dict[str, Any]:
    return {"Name": name, "Format": fmt, "Data": data}


def param(name: str, data: Any) -> dict[str, Any]:
    return {"Name": name, "Data": data}


def factory_doc(*, endpoint: str = "GW-cmp", device_cert: bytes | None = None,
                extra_params: tuple[dict[str, Any], ...] = (),
                extra_certs: tuple[dict[str, Any], ...] = (),
                **changes: Any) -> dict[str, Any]:
    """A bundle as a factory tool sends it; changes replace (None: remove) top-level keys."""
    c = creds()
    account = c.account
    doc: dict[str, Any] = {
        "SchemeVersion": "0.0.1",
        "Keys": [key_entry("mbed.BootstrapDevicePrivateKey", _der_key(c.dev_key))],
        "Certificates": [
            cert_entry("mbed.BootstrapDeviceCert", device_cert or c.device(endpoint)),
            cert_entry("mbed.BootstrapServerCACert", c.ca()),
            *extra_certs,
        ],
        "ConfigParams": [
            param("mbed.UseBootstrap", 1),
            param("mbed.BootstrapServerURI",
                  f"coaps://bootstrap.example.com:5684?aid={account}"),
            param("mbed.EndpointName", endpoint),
            param("mbed.AccountID", account),
            param("mbed.SerialNumber", endpoint),
            param("mbed.Manufacturer", "cmp"),
            param("mbed.ModelNumber", "m1"),
            param("mbed.DeviceType", "gw"),
            param("mbed.HardwareVersion", "hw1"),
            param("mbed.MemoryTotalKB", 0),
            param("mbed.CurrentTime", int(time.time())),
            param("mbed.UTCOffset", "+00:00"),
            param("mbed.Timezone", "UTC"),
            param("mbed.VendorId", b"v" * 16),
            param("mbed.ClassId", b"c" * 16),
            *extra_params,
        ],
        "Verify": 1,
        "SID": "sid-1",
    }
    for name, value in changes.items():
        if value is None:
            doc.pop(name, None)
        else:
            doc[name] = value
    return doc


def minimal_doc(**changes: Any) -> dict[str, Any]:
    """Only what a message of a kept-alive session needs: no Verify, no bootstrap CA check."""
    doc: dict[str, Any] = {"SchemeVersion": "0.0.1", "KpAlvSess": 1, "Verify": 0, "SID": "k"}
    doc.update(changes)
    return {k: v for k, v in doc.items() if v is not None}


def frame_pairs(*pairs: tuple[Any, Any]) -> bytes:
    """A definite-length map written pair by pair (a key may repeat)."""
    assert len(pairs) < 24
    return frame(bytes([0xA0 + len(pairs)])
                 + b"".join(cbor2.dumps(k) + cbor2.dumps(v) for k, v in pairs))


def frame(doc: Any) -> bytes:
    body = doc if isinstance(doc, bytes) else cbor2.dumps(doc)
    return TOKEN + struct.pack("<I", len(body)) + body + hashlib.sha256(body).digest()


# ---- probes: a list of actions run alike on both programs -----------------------------------

Action = tuple[Any, ...]  # ("send", bytes) | ("read",) | ("pause", s) | ("shut",) | ("signal", n)


def send(data: bytes) -> list[Action]:
    return [("send", data), ("read",)]


def bundle_probe(doc: Any) -> list[Action]:
    return send(frame(doc))


def with_params(*params: dict[str, Any], **changes: Any) -> dict[str, Any]:
    doc = factory_doc(**changes)
    names = {p["Name"] for p in params}
    doc["ConfigParams"] = [p for p in doc["ConfigParams"] if p["Name"] not in names] + list(params)
    return doc


def _rsa_key() -> bytes:
    return _der_key(rsa.generate_private_key(public_exponent=65537, key_size=2048))


def _spki(key: Any) -> bytes:
    return bytes(key.public_key().public_bytes(serialization.Encoding.DER,
                                               serialization.PublicFormat.SubjectPublicKeyInfo))


def _pem(der: bytes) -> bytes:
    return x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM)


def _csr_doc(**changes: Any) -> dict[str, Any]:
    return minimal_doc(CsrReqs=[{
        "PrKN": "mbed.LwM2MDevicePrivateKey",
        "Subj": "C=US,ST=Texas,L=Austin,O=Company,CN=GW-cmp",
        "MD": 1}], **changes)


def _chain_doc() -> dict[str, Any]:
    c = creds()
    return factory_doc(CertificateChains=[{
        "Name": "mbed.CmpChain", "Format": "der", "DataArray": [c.device(), c.ca()]}])


def _five_mib() -> dict[str, Any]:
    big = os.urandom(5 * 1024 * 1024)
    return with_params(param("mbed.CmpBlob", big))


AREA: dict[str, str] = {}
PROBES: dict[str, Callable[[], list[Action]]] = {}


def probe(area: str, name: str, build: Callable[[], list[Action]]) -> None:
    AREA[name] = area
    PROBES[name] = build


c_ = "1 credentials"
probe(c_, "good-bundle", lambda: bundle_probe(factory_doc()))
probe(c_, "cert-not-parsing", lambda: bundle_probe(factory_doc(Certificates=[
    cert_entry("mbed.BootstrapDeviceCert", b"\x30\x03\x02\x01\x01"),
    cert_entry("mbed.BootstrapServerCACert", creds().ca())])))
probe(c_, "key-not-parsing", lambda: bundle_probe(factory_doc(Keys=[
    key_entry("mbed.BootstrapDevicePrivateKey", b"\x30\x03\x02\x01\x01")])))
probe(c_, "key-not-matching-cert", lambda: bundle_probe(factory_doc(Keys=[
    key_entry("mbed.BootstrapDevicePrivateKey", _der_key(creds().other_key))])))
probe(c_, "cn-not-endpoint", lambda: bundle_probe(factory_doc(
    device_cert=creds().device("someone-else"))))
probe(c_, "device-cert-expired", lambda: bundle_probe(factory_doc(
    device_cert=creds().device(days=-1, start_days=-30))))
probe(c_, "update-auth-cert-expired", lambda: bundle_probe(factory_doc(extra_certs=(
    cert_entry("mbed.UpdateAuthCert", creds().ca(days=-1, start_days=-30)),))))
probe(c_, "rsa-key", lambda: bundle_probe(factory_doc(Keys=[
    key_entry("mbed.BootstrapDevicePrivateKey", _rsa_key())])))
probe(c_, "rsa-key-pkcs8", lambda: bundle_probe(factory_doc(Keys=[key_entry(
    "mbed.BootstrapDevicePrivateKey", rsa.generate_private_key(65537, 2048).private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))])))
probe(c_, "rsa-certificate", lambda: bundle_probe(factory_doc(device_cert=_cert(
    rsa.generate_private_key(65537, 2048), "GW-cmp", creds().ca_key, "cmp CA", ca=False))))
probe(c_, "cert-prkn-not-matching", lambda: bundle_probe(factory_doc(
    Keys=[key_entry("mbed.BootstrapDevicePrivateKey", _der_key(creds().other_key))],
    Certificates=[{**cert_entry("mbed.BootstrapDeviceCert", creds().device()),
                   "PrKN": "mbed.BootstrapDevicePrivateKey"},
                  cert_entry("mbed.BootstrapServerCACert", creds().ca())])))
probe(c_, "cert-prkn-of-no-key", lambda: bundle_probe(factory_doc(Certificates=[
    {**cert_entry("mbed.BootstrapDeviceCert", creds().device()), "PrKN": "mbed.NoSuchKey"},
    cert_entry("mbed.BootstrapServerCACert", creds().ca())])))
probe(c_, "empty-certificate", lambda: bundle_probe(factory_doc(Certificates=[
    cert_entry("mbed.BootstrapDeviceCert", b""),
    cert_entry("mbed.BootstrapServerCACert", creds().ca())])))
probe(c_, "unknown-key-field", lambda: bundle_probe(factory_doc(Keys=[{
    **key_entry("mbed.BootstrapDevicePrivateKey", _der_key(creds().dev_key)), "Colour": 1}])))
probe(c_, "empty-config-text", lambda: bundle_probe(with_params(param("mbed.Manufacturer", ""))))
probe(c_, "pem-format", lambda: bundle_probe(factory_doc(Certificates=[
    cert_entry("mbed.BootstrapDeviceCert", _pem(creds().device()), fmt="pem"),
    cert_entry("mbed.BootstrapServerCACert", creds().ca())])))
probe(c_, "validity-under-10-years", lambda: bundle_probe(factory_doc(
    device_cert=creds().device(days=365))))
# Parsed by neither mbedtls nor cryptography (which raises instead of refusing): a curve
# neither knows (prime239v1), and an X.509 version 4.
probe(c_, "cert-unknown-curve", lambda: bundle_probe(factory_doc(
    device_cert=unparsable.with_prime239v1_key(creds().device(), creds().ca_key))))
probe(c_, "cert-version-4", lambda: bundle_probe(factory_doc(
    device_cert=unparsable.with_version_4(creds().device(), creds().ca_key))))
probe(c_, "update-auth-cert-unknown-curve", lambda: bundle_probe(factory_doc(extra_certs=(
    cert_entry("mbed.UpdateAuthCert",
               unparsable.with_prime239v1_key(creds().ca(), creds().ca_key)),))))
probe(c_, "cert-extension-twice", lambda: bundle_probe(factory_doc(
    device_cert=unparsable.with_first_extension_twice(creds().device(client_auth=True),
                                                      creds().ca_key))))
probe(c_, "cert-with-client-auth", lambda: bundle_probe(factory_doc(
    device_cert=creds().device(client_auth=True))))
probe(c_, "key-unknown-curve", lambda: bundle_probe(factory_doc(Keys=[
    key_entry("mbed.BootstrapDevicePrivateKey", unparsable.private_key())])))
probe(c_, "key-unknown-curve-pkcs8", lambda: bundle_probe(factory_doc(Keys=[
    key_entry("mbed.BootstrapDevicePrivateKey", unparsable.private_key_pkcs8())])))
probe(c_, "cert-secp384r1-key", lambda: bundle_probe(factory_doc(device_cert=_cert(
    ec.generate_private_key(ec.SECP384R1()), "GW-cmp", creds().ca_key, "cmp CA", ca=False,
    ou=creds().account))))
probe(c_, "public-key-secp384r1", lambda: bundle_probe(factory_doc(Keys=[
    key_entry("mbed.BootstrapDevicePrivateKey", _der_key(creds().dev_key)),
    key_entry("mbed.CmpPublic", _spki(ec.generate_private_key(ec.SECP384R1())),
              kind="ECCPublic")])))
probe(c_, "public-key-rsa", lambda: bundle_probe(factory_doc(Keys=[
    key_entry("mbed.BootstrapDevicePrivateKey", _der_key(creds().dev_key)),
    key_entry("mbed.CmpPublic", _spki(rsa.generate_private_key(65537, 2048)),
              kind="ECCPublic")])))
probe(c_, "public-key-unknown-curve", lambda: bundle_probe(factory_doc(Keys=[
    key_entry("mbed.BootstrapDevicePrivateKey", _der_key(creds().dev_key)),
    key_entry("mbed.CmpPublic", unparsable.public_key(), kind="ECCPublic")])))


d_ = "2 duplicates"
probe(d_, "item-twice-in-bundle", lambda: bundle_probe(with_params(
    param("mbed.Manufacturer", "cmp"), param("mbed.Manufacturer", "cmp2"))))
probe(d_, "group-key-twice", lambda: send(frame_pairs(
    ("SchemeVersion", "0.0.1"), ("ConfigParams", [param("mbed.CmpA", "1")]),
    ("ConfigParams", [param("mbed.CmpA", "1")]), ("KpAlvSess", 1))))
probe(d_, "key-twice-in-bundle", lambda: bundle_probe(factory_doc(Keys=[
    key_entry("mbed.BootstrapDevicePrivateKey", _der_key(creds().dev_key)),
    key_entry("mbed.BootstrapDevicePrivateKey", _der_key(creds().dev_key))])))
probe(d_, "item-again-in-next-message", lambda: [
    *bundle_probe(minimal_doc(ConfigParams=[param("mbed.Manufacturer", "a")])),
    *bundle_probe(minimal_doc(ConfigParams=[param("mbed.Manufacturer", "b")])),
    *bundle_probe(factory_doc())])

h_ = "3 certificate chains"
probe(h_, "chain-of-two", lambda: bundle_probe(_chain_doc()))
probe(h_, "device-cert-as-chain", lambda: bundle_probe(factory_doc(
    Certificates=[cert_entry("mbed.BootstrapServerCACert", creds().ca())],
    CertificateChains=[{"Name": "mbed.BootstrapDeviceCert", "Format": "der",
                        "DataArray": [creds().device(), creds().ca()]}])))
probe(h_, "chain-in-wrong-order", lambda: bundle_probe(factory_doc(CertificateChains=[{
    "Name": "mbed.CmpChain", "Format": "der", "DataArray": [creds().ca(), creds().device()]}])))

r_ = "4 CSR requests"
probe(r_, "csr-request", lambda: [*bundle_probe(_csr_doc()), *bundle_probe(factory_doc())])
probe(r_, "csr-without-sid", lambda: [*bundle_probe(_csr_doc(SID=None)),
                                      *bundle_probe(factory_doc())])
# Subjects as KCM reads them (mbedtls's x509_string_to_names): what it refuses, and the names
# it writes for what it takes.
CSR_SUBJECTS = {
    "country-of-13-letters": "C=United States,O=Company,CN=GW-cmp",
    "common-name-of-65-letters": "CN=" + "g" * 65,
    "value-of-255-bytes": "CN=" + "g" * 255,
    "value-of-256-bytes": "CN=" + "g" * 256,
    "empty-value": "O=,CN=GW-cmp",
    "empty": "",
    "without-equals": "GW-cmp",
    "trailing-comma": "CN=GW-cmp,",
    "unknown-label": "XX=GW-cmp",
    "label-in-lower-case": "cn=GW-cmp",
    "label-in-upper-case": "SERIALNUMBER=GW-cmp",
    "space-before-label": " CN=GW-cmp",
    "spaces-after-comma": "O=o,   CN=c ,OU=x",
    "comma-in-label": "GW,CN=x",
    "label-twice": "CN=a,O=o,CN=b",
    "escaped-comma": "O=a\\,b,CN=c",
    "other-escape": "O=a\\b,CN=c",
    "short-labels": "C=US,ST=s,L=l,O=o,OU=ou,CN=cn,serialNumber=sn,emailAddress=e@x,title=t,"
                    "SN=sur,GN=g,initials=i,pseudonym=p,generationQualifier=q,DC=dc,"
                    "dnQualifier=dq,postalAddress=pa,postalCode=pc,R=r",
    "long-labels": "countryName=US,stateOrProvinceName=s,locality=l,organizationName=o,"
                   "organizationalUnitName=ou,commonName=cn,surName=s,givenName=g,"
                   "domainComponent=d",
}


def _csr_subject(subject: str) -> list[Action]:
    return [*bundle_probe(minimal_doc(CsrReqs=[{
        "PrKN": "mbed.LwM2MDevicePrivateKey", "Subj": subject, "MD": 1}])),
        *bundle_probe(factory_doc())]


for _name, _subject in CSR_SUBJECTS.items():
    probe(r_, f"csr-subject-{_name}", lambda subject=_subject: _csr_subject(subject))
probe(r_, "six-csr-requests", lambda: [*bundle_probe(minimal_doc(CsrReqs=[
    {"PrKN": f"mbed.CmpKey{i}", "Subj": "CN=GW-cmp", "MD": 1} for i in range(6)])),
    *bundle_probe(factory_doc())])

k_ = "5 kept-alive sessions"
probe(k_, "disable-in-kept-alive", lambda: [
    *bundle_probe(minimal_doc(Disable=1)), *bundle_probe(factory_doc())])
probe(k_, "csr-error-in-kept-alive", lambda: [
    *bundle_probe(minimal_doc(CsrReqs=[{"PrKN": "x"}], Verify=None)),
    *bundle_probe(factory_doc())])
probe(k_, "kept-alive-then-last", lambda: [
    *bundle_probe(minimal_doc(ConfigParams=[param("mbed.Manufacturer", "a")])),
    *bundle_probe(factory_doc(ConfigParams=[
        p for p in factory_doc()["ConfigParams"] if p["Name"] != "mbed.Manufacturer"]))])

t_ = "6 limits and time"
probe(t_, "five-mib-bundle", lambda: bundle_probe(_five_mib()))
probe(t_, "two-frames-one-write", lambda: [
    ("send", frame(factory_doc()) + frame(factory_doc())), ("read",), ("read",)])


def _pause_probe() -> list[Action]:
    data = frame(factory_doc())
    return [("send", data[:40]), ("pause", 65.0), ("send", data[40:]), ("read",)]


probe(t_, "pause-65s-mid-message", _pause_probe)

w_ = "7 what it writes"
probe(w_, "integer-params", lambda: bundle_probe(with_params(
    param("mbed.CmpSmall", 7), param("mbed.CmpBig", 1 << 40), param("mbed.CmpNeg", -5))))
probe(w_, "all-item-kinds", lambda: bundle_probe(factory_doc(Keys=[
    key_entry("mbed.BootstrapDevicePrivateKey", _der_key(creds().dev_key)),
    key_entry("mbed.CmpPublic", creds().dev_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo),
        kind="ECCPublic")])))

s_ = "8 what it says"
probe(s_, "error-before-verify", lambda: bundle_probe(factory_doc(
    ConfigParams=[param("mbed.EndpointName", "GW-cmp")])))
probe(s_, "verify-error-with-time-warnings", lambda: bundle_probe(minimal_doc(
    Verify=1, ConfigParams=[param("mbed.EndpointName", "GW-cmp")])))
probe(s_, "verify-without-cloud-items", lambda: bundle_probe({
    "SchemeVersion": "0.0.1", "SID": "s",
    "ConfigParams": [param("mbed.EndpointName", "GW-x")], "Verify": 1}))
probe(s_, "sid-after-the-error", lambda: bundle_probe(
    {**factory_doc(Verify=True, SID=None), "SID": "late"}))
probe(s_, "no-scheme-version", lambda: bundle_probe(factory_doc(SchemeVersion=None)))
probe(s_, "not-cbor", lambda: send(frame(b"\xff\xfe not cbor")))
probe(s_, "indefinite-map", lambda: send(frame(
    b"\xbf" + b"".join(cbor2.dumps(k) + cbor2.dumps(v) for k, v in factory_doc().items())
    + b"\xff")))
probe(s_, "thirteen-keys", lambda: bundle_probe({**factory_doc(), **{
    n: 0 for n in ("D", "Di", "Dis", "Disa", "Disab", "Disabl", "Disable")}}))
probe(s_, "keep-alive-cbor-true", lambda: bundle_probe(factory_doc(KpAlvSess=True)))
probe(s_, "no-bootstrap-ca-verify-0", lambda: bundle_probe(factory_doc(Verify=0, Certificates=[
    cert_entry("mbed.BootstrapDeviceCert", creds().device())])))
probe(s_, "rot-of-15-bytes", lambda: bundle_probe(factory_doc(ROT=b"r" * 15)))
probe(s_, "entropy-of-48-bytes", lambda: bundle_probe(factory_doc(Entropy=b"e" * 48)))
probe(s_, "use-bootstrap-0", lambda: bundle_probe(with_params(param("mbed.UseBootstrap", 0))))
probe(s_, "use-bootstrap-text", lambda: bundle_probe(with_params(param("mbed.UseBootstrap", "1"))))
probe(s_, "uri-not-coaps", lambda: bundle_probe(with_params(
    param("mbed.BootstrapServerURI", "https://bootstrap.example.com"))))
probe(s_, "update-auth-cert-not-parsing", lambda: bundle_probe(factory_doc(extra_certs=(
    cert_entry("mbed.UpdateAuthCert", b"\x30\x03\x02\x01\x01"),))))
probe(s_, "use-bootstrap-2", lambda: bundle_probe(with_params(param("mbed.UseBootstrap", 2))))
probe(s_, "class-id-of-15-bytes", lambda: bundle_probe(with_params(
    param("mbed.ClassId", b"c" * 15))))
probe(s_, "disable-message", lambda: bundle_probe(factory_doc(Disable=1)))
probe(s_, "sigint-while-waiting", lambda: [("signal", signal.SIGINT)])
probe(s_, "sigterm-while-waiting", lambda: [("signal", signal.SIGTERM)])
probe(w_, "storage-before-any-message", lambda: [("send", b"no token here"), ("shut",),
                                                 ("read",)])
probe(s_, "unknown-group", lambda: bundle_probe(factory_doc(Bogus=1)))
probe(s_, "verify-cbor-true", lambda: bundle_probe(factory_doc(Verify=True)))
probe(s_, "utc-offset-+0:00", lambda: bundle_probe(with_params(param("mbed.UTCOffset", "+0:00"))))

f_ = "framing"
probe(f_, "bad-checksum", lambda: [("send", frame(factory_doc())[:-1] + b"\0"), ("shut",),
                                   ("read",)])
probe(f_, "short-body", lambda: [("send", frame(factory_doc())[:100]), ("shut",), ("read",)])
probe(f_, "size-0", lambda: [("send", TOKEN + b"\0\0\0\0"), ("shut",), ("read",)])
probe(f_, "token-after-partial-match", lambda: [("send", b"m" + frame(factory_doc())),
                                                ("shut",), ("read",)])


# ---- running a probe -------------------------------------------------------------------------

@dataclass(frozen=True)
class FileState:
    name: str
    size: int
    mode: int
    header: tuple[Any, ...]


@dataclass(frozen=True)
class Outcome:
    answers: tuple[tuple[Any, ...], ...]
    end: int | str  # exit status, "signal N", or "running"
    files: tuple[FileState, ...]


def _read_answer(sock: socket.socket) -> tuple[Any, ...]:
    sock.settimeout(ANSWER_TIMEOUT)
    buf = b""

    def need(n: int) -> bytes:
        nonlocal buf
        while len(buf) < n:
            chunk = sock.recv(65536)
            if not chunk:
                raise EOFError
            buf += chunk
        out, buf = buf[:n], buf[n:]
        return out

    try:
        if need(8) != TOKEN:
            return ("garbage",)
        status = struct.unpack("<I", need(4))[0]
        if status:
            return ("comm", status)
        size = struct.unpack("<I", need(4))[0]
        body = need(size)
        assert need(32) == hashlib.sha256(body).digest()
    except EOFError:
        return ("closed",)
    except ConnectionResetError:
        return ("reset",)
    doc = cbor2.loads(body)
    return ("answer", doc.get("ReturnStatus"), doc.get("SID", "<none>"),
            doc.get("WarningInfo", "<none>"), doc.get("InfoMessage"),
            tuple(_csr(entry) for entry in doc.get("Csrs", ())))


def _der(blob: bytes, at: int) -> tuple[int, int, int]:
    """(tag, start of content, end) of the DER element at offset at."""
    tag, size = blob[at], blob[at + 1]
    start = at + 2
    if size & 0x80:
        count = size & 0x7F
        size = int.from_bytes(blob[start:start + count], "big")
        start += count
    return tag, start, start + size


def _csr(entry: dict[str, Any]) -> tuple[Any, ...]:
    """A CSR of the answer: its keys, the key name, and its subject's DER (the key is new each
    time; the real one's signature algorithm carries a NULL that cryptography refuses, so the
    DER is walked here)."""
    blob = entry["Data"]
    _, info, _ = _der(blob, 0)  # CertificationRequest
    _, content, _ = _der(blob, info)  # CertificationRequestInfo
    _, _, version_end = _der(blob, content)
    tag, _, subject_end = _der(blob, version_end)
    return (tuple(sorted(entry)), entry.get("PrKN"), tag, blob[version_end:subject_end])


def _header(blob: bytes) -> tuple[Any, ...]:
    if len(blob) < 6:
        return ("short",)
    version, mode, length = struct.unpack_from("<HHH", blob)
    return (version, hex(mode), length, blob[6:6 + length].decode(errors="replace"))


def _files(root: Path) -> tuple[FileState, ...]:
    pal = root / "pal"
    if not pal.is_dir():
        return ()
    states = [FileState("pal", 0, pal.stat().st_mode & 0o7777, ())]
    for path in sorted(pal.rglob("*")):
        if path.is_dir():
            states.append(FileState(str(path.relative_to(root)), 0, path.stat().st_mode & 0o7777,
                                    ()))
            continue
        blob = path.read_bytes()
        if path.name == "flashSim":
            header: tuple[Any, ...] = ("erased" if blob == b"\xff" * len(blob) else "written",)
        else:
            header = _header(blob)
        states.append(FileState(str(path.relative_to(root)), len(blob),
                                path.stat().st_mode & 0o7777, header))
    return tuple(states)


def _end(fcc: SimFcc, answered: bool) -> int | str:
    code = fcc.wait_exit(ANSWER_TIMEOUT if not answered else RUNNING_GRACE)
    if code is None:
        code = fcc.wait_exit(RUNNING_GRACE)
    if code is None:
        return "running"
    return f"signal {-code}" if code < 0 else code


def run_probe(fcc: SimFcc, actions: list[Action]) -> Outcome:
    assert fcc.ip is not None and fcc.port is not None
    answers: list[tuple[Any, ...]] = []
    sock: socket.socket | None = None
    try:
        for action in actions:
            if action[0] == "signal":
                time.sleep(0.3)
                os.kill(fcc.process.pid, action[1])
                continue
            if sock is None:
                sock = _connect(fcc.ip, fcc.port)
            if action[0] == "send":
                sock.sendall(action[1])
            elif action[0] == "pause":
                time.sleep(action[1])
            elif action[0] == "shut":
                sock.shutdown(socket.SHUT_WR)
            elif action[0] == "read":
                answers.append(_read_answer(sock))
        answered = bool(answers) and answers[-1][0] == "answer"
        end = _end(fcc, answered or not answers)
    finally:
        if sock is not None:
            sock.close()
    return Outcome(tuple(answers), end, _files(fcc.cwd))


def _connect(ip: str, port: int) -> socket.socket:
    # FCC prints its port a moment before it listens: retry a refused connection a few times.
    for _ in range(50):
        try:
            return socket.create_connection((ip, port), timeout=ANSWER_TIMEOUT)
        except ConnectionRefusedError:
            time.sleep(0.1)
    return socket.create_connection((ip, port), timeout=ANSWER_TIMEOUT)


def programs() -> Iterator[tuple[str, list[str]]]:
    assert REAL is not None
    yield "real", ["env", ENTROPY_ENV, REAL]
    yield "sim", sim_argv("fcc")


def _run_side(folder: Path, argv: list[str], actions: list[Action]) -> Outcome:
    """One program through one probe. The real FCC prints its port before it binds it, and
    picks the port with rand() seeded by the kernel tick: a port that is taken makes it exit
    after the line ("pal_bind failed"). The agent starts it again for that (FCC_STARTS starts
    in all), and so does the comparison, in a fresh folder: no probe's bytes reached it."""
    for start in range(1, FCC_STARTS + 1):
        fcc: SimFcc | None = None
        try:
            fcc = start_fcc(folder if start == 1 else
                            folder.with_name(f"{folder.name}-{start}"), argv=argv)
            return run_probe(fcc, actions)
        except (RuntimeError, ConnectionRefusedError) as e:
            said = fcc.output.text() if fcc is not None else str(e)
            if start == FCC_STARTS or "pal_bind failed" not in said:
                raise
        finally:
            if fcc is not None:
                fcc.stop(grace=2.0)
    raise AssertionError("unreachable")


def _differences(real: Outcome, sim: Outcome) -> str:
    lines = []
    if real.answers != sim.answers:
        lines += [f"answers: real {real.answers}", f"         sim  {sim.answers}"]
    if real.end != sim.end:
        lines.append(f"end: real {real.end}, sim {sim.end}")
    for f in sorted(set(real.files) - set(sim.files), key=lambda f: f.name):
        lines.append(f"real only: {f}")
    for f in sorted(set(sim.files) - set(real.files), key=lambda f: f.name):
        lines.append(f"sim only:  {f}")
    return "\n".join(lines)


def _run_both(folder: Path, actions: list[Action]) -> dict[str, Outcome | str]:
    """Both programs at once on the same bytes; a side that never answered is named as hung."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {side: pool.submit(_run_side, folder / side, argv, actions)
                   for side, argv in programs()}
        outcomes: dict[str, Outcome | str] = {}
        for side, future in futures.items():
            try:
                outcomes[side] = future.result()
            except (TimeoutError, socket.timeout):
                outcomes[side] = f"no answer within {ANSWER_TIMEOUT:.0f} s"
    return outcomes


def compare(tmp_path: Path, name: str, record_property: Callable[[str, object], None]) -> None:
    """Run the probe on both programs at once (the same bytes) and compare what they did.

    A side that gives no answer at all within ANSWER_TIMEOUT is run again once, both sides
    afresh: seen once on a loaded machine (a probe that answers in milliseconds alone), and
    not again in three full runs after it. The rerun is recorded ("hung") and listed in the
    summary, so a program that really hangs still fails, and a rare one stays visible."""
    record_property("comparison", "different")
    actions = PROBES[name]()
    outcomes = _run_both(tmp_path / "first", actions)
    hung = sorted(side for side, outcome in outcomes.items() if isinstance(outcome, str))
    if hung:
        record_property("hung", f"{', '.join(hung)}: {outcomes[hung[0]]}; run again")
        outcomes = _run_both(tmp_path / "again", actions)
    for side, outcome in outcomes.items():
        assert not isinstance(outcome, str), f"{AREA[name]}, {name}: {side} FCC: {outcome}"
    real, sim = outcomes["real"], outcomes["sim"]
    assert isinstance(real, Outcome) and isinstance(sim, Outcome)
    alike = sim == real
    record_property("comparison", "alike" if alike else "different")
    assert alike, f"{AREA[name]}, {name}:\n{_differences(real, sim)}"


@pytest.mark.parametrize("name", [n for n in PROBES if n != "pause-65s-mid-message"])
def test_sim_fcc_answers_as_the_real_fcc(tmp_path: Path, name: str,
                                         record_property: Callable[[str, object], None]) -> None:
    compare(tmp_path, name, record_property)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_65_second_pause_mid_message(tmp_path: Path,
                                       record_property: Callable[[str, object], None]) -> None:
    compare(tmp_path, "pause-65s-mid-message", record_property)


def test_every_area_has_probes() -> None:
    areas = {a.split()[0] for a in AREA.values()}
    assert {str(n) for n in range(1, 9)} <= areas


def test_each_item_is_stored_twice_with_the_same_bytes(tmp_path: Path) -> None:
    """What the agent's repair of a copy lost at a power cut relies on: the real FCC writes
    every item to pal/BACKUP, then copies it byte for byte to pal/WORKING (ESFS's
    esfs_copy_file), so either copy can be made again from the other; sim fcc does the same."""
    for side, argv in programs():
        outcome = _run_side(tmp_path / side, argv, bundle_probe(factory_doc()))
        assert outcome.answers and outcome.answers[-1][:2] == ("answer", 0), (side, outcome)
        pal = tmp_path / side / "pal"
        backup = {p.name: p.read_bytes() for p in (pal / "BACKUP").iterdir()}
        working = {p.name: p.read_bytes() for p in (pal / "WORKING").iterdir()}
        assert len(working) > 10 and backup == working, side

