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
