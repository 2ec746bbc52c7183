"""The simulators' keys and certificates, checked with OpenSSL when it is installed.

They need the `sim` extra (cryptography); without it these tests skip, except the one that
checks the simulated server then refuses to start with a one-line error naming the extra.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

HAVE_CRYPTOGRAPHY = importlib.util.find_spec("cryptography") is not None
needs_crypto = pytest.mark.skipif(not HAVE_CRYPTOGRAPHY,
                                  reason="the 'sim' extra (cryptography) is not installed")


def x509() -> Any:
    from pep_agent.sim import x509 as module

    return module


@needs_crypto
def test_device_certificate_is_signed_by_the_authority() -> None:
    from cryptography import x509 as cx
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    ca = x509().Authority.generate()
    key, der = ca.issue("GW-1", "0123456789abcdef0123456789abcdef")
    cert = cx.load_der_x509_certificate(der)
    ca_cert = cx.load_der_x509_certificate(ca.cert_der)
    assert cert.issuer == ca_cert.subject
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "GW-1"
    public = ca_cert.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    assert public.curve.name == "secp256r1"
    public.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(hashes.SHA256()))
    # Another CA's key must not verify it: the check above can fail.
    with pytest.raises(InvalidSignature):
        x509().Authority.generate().key.private.public_key().verify(
            cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(hashes.SHA256()))
    assert cert.extensions.get_extension_for_class(cx.KeyUsage).value.digital_signature
    assert ca_cert.extensions.get_extension_for_class(cx.BasicConstraints).value.ca
    assert key.public_der == cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


@needs_crypto
def test_enrollment_id_format() -> None:
    eid = x509().enrollment_id(b"certificate")
    assert len(eid) == 97
    assert re.fullmatch(r"A-([0-9a-f]{2}:){31}[0-9a-f]{2}", eid)
    assert eid[2:].replace(":", "") == hashlib.sha256(b"certificate").hexdigest()


@pytest.mark.spawns
@needs_crypto
@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not installed")
def test_openssl_accepts_the_chain_and_the_key(tmp_path: Path) -> None:
    ca = x509().Authority.generate()
    key, cert = ca.issue("LINE 7/GW+001,rev=2", "0123456789abcdef0123456789abcdef")
    (tmp_path / "ca.der").write_bytes(ca.cert_der)
    (tmp_path / "dev.der").write_bytes(cert)
    (tmp_path / "key.der").write_bytes(key.private_der)

    def openssl(*args: str) -> str:
        return subprocess.run(["openssl", *args], cwd=tmp_path, capture_output=True, text=True,
                              check=True, timeout=30).stdout

    openssl("x509", "-inform", "der", "-in", "ca.der", "-out", "ca.pem")
    openssl("x509", "-inform", "der", "-in", "dev.der", "-out", "dev.pem")
    assert "dev.pem: OK" in openssl("verify", "-CAfile", "ca.pem", "dev.pem")
    subject = openssl("x509", "-in", "dev.pem", "-noout", "-subject", "-nameopt", "multiline")
    assert re.search(r"commonName\s+= LINE 7/GW\+001,rev=2$", subject, re.MULTILINE)
    # FCC stores the device key as an RFC 5915 ECPrivateKey ("EC PRIVATE KEY"), not PKCS#8.
    assert b"\x06\x08\x2a\x86\x48\xce\x3d\x03\x01\x07" in key.private_der  # prime256v1 OID
    openssl("ec", "-inform", "der", "-in", "key.der", "-check", "-noout")
    # The private key matches the certificate's public key.
    from_key = openssl("ec", "-inform", "der", "-in", "key.der", "-pubout")
    from_cert = openssl("x509", "-in", "dev.pem", "-noout", "-pubkey")
    assert from_key == from_cert


@pytest.mark.spawns
def test_sim_server_without_the_extra_names_it(tmp_path: Path) -> None:
    # A real process in which `import cryptography` fails, as where the extra is not installed.
    blocker = tmp_path / "blocked" / "cryptography"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('not installed')\n")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(blocker.parent),
                                                      env.get("PYTHONPATH")]))
    out = subprocess.run([sys.executable, "-m", "pep_agent", "sim", "server", "--port", "0",
                          "--db", str(tmp_path / "db.sqlite")],
                         cwd=Path(__file__).parents[2], env=env, capture_output=True, text=True,
                         timeout=60, check=False)
    assert out.returncode == 3, out.stderr
    assert "'sim' extra" in out.stderr and "pep-agent[sim]" in out.stderr
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "db.sqlite").exists()


@needs_crypto
def test_what_cryptography_raises_on_is_refused_as_fcc_refuses_it() -> None:
    from cryptography import x509 as cx
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    from pep_agent.sim.der import KeyFault
    from tests import unparsable

    module = x509()
    ca = module.Authority.generate()
    _, cert = ca.issue("GW-1", "acct")
    odd_curve = unparsable.with_prime239v1_key(cert, ca.key.private)
    version_4 = unparsable.with_version_4(cert, ca.key.private)
    twice = unparsable.with_first_extension_twice(cert, ca.key.private)
    # What cryptography does with them: it raises rather than refuses.
    with pytest.raises(cx.DuplicateExtension):
        cx.load_der_x509_certificate(twice).extensions  # noqa: B018
    with pytest.raises(UnsupportedAlgorithm):
        cx.load_der_x509_certificate(odd_curve).public_key()
    with pytest.raises(cx.InvalidVersion):
        cx.load_der_x509_certificate(version_4)
    for key in (unparsable.private_key(), unparsable.private_key_pkcs8()):
        with pytest.raises(UnsupportedAlgorithm):
            serialization.load_der_private_key(key, password=None)
        assert module.load_private_key(key) is None
    assert module.load_certificate(odd_curve) is None
    assert module.load_certificate(version_4) is None
    assert module.load_certificate(twice) is None
    assert module.load_public_key(unparsable.public_key()) is None

    def spki(key: object) -> bytes:
        return key.public_key().public_bytes(  # type: ignore[attr-defined,no-any-return]
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)

    p384 = ec.generate_private_key(ec.SECP384R1())
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    # KCM's reasons, as the real FCC answers them (tests/realfcc has each as a probe).
    assert module.public_key_fault(spki(ca.key.private)) is None
    assert module.public_key_fault(unparsable.public_key()) is KeyFault.CURVE
    assert module.public_key_fault(spki(p384)) is KeyFault.CURVE
    assert module.public_key_fault(spki(rsa_key)) is KeyFault.ALGORITHM
    assert module.public_key_fault(b"\x30\x03\x02\x01\x01") is KeyFault.FORMAT
    assert module.certificate_fault(cert) is None
    assert module.certificate_fault(odd_curve) is KeyFault.CURVE
    assert module.certificate_fault(version_4) is KeyFault.FORMAT
    assert module.certificate_fault(twice) is KeyFault.FORMAT
    assert module.certificate_fault(b"\x30\x03\x02\x01\x01") is KeyFault.FORMAT


@needs_crypto
def test_a_csr_is_written_for_any_subject_kcm_reads() -> None:
    from cryptography import x509 as cx

    module = x509()
    # X.520 has a country code of two letters; KCM writes what it is given.
    key, request = module.csr("C=United States,O=Company,CN=GW-1")
    assert len(key) == module.GENERATED_KEY_SIZE
    assert request is not None and cx.load_der_x509_csr(request).is_signature_valid
    assert b"\x06\x03U\x04\x06\x13\x0dUnited States" in request
    # A common name over X.520's 64 letters, and one KCM refuses (256 bytes).
    _, long_name = module.csr("CN=" + "g" * 255)
    assert long_name is not None and b"g" * 255 in long_name
    # Refused: the key is made all the same (KCM stores it before it reads the subject).
    key, refused = module.csr("CN=" + "g" * 256)
    assert refused is None and len(key) == module.GENERATED_KEY_SIZE
