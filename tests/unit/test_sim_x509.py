"""Pure-Python P-256 keys and certificates, checked against OpenSSL when it is installed."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from pep_agent.sim import p256, x509


def test_scalar_multiplication_stays_on_the_curve() -> None:
    assert p256.on_curve(p256.G)
    for k in (1, 2, 3, p256.N - 1, 0xDEADBEEF):
        assert p256.on_curve(p256.multiply(k))
    assert p256.multiply(p256.N - 1) == (p256.G[0], p256.P - p256.G[1])  # -G
    assert p256.multiply(2) == p256.multiply(1, p256.multiply(2))


def test_known_answer_for_2g() -> None:
    x, y = p256.multiply(2)
    assert x == 0x7CF27B188D034F7E8A52380304B51AC3C08969E277F21B35A60B48FC47669978
    assert y == 0x07775510DB8ED040293D9AC69F7430DBBA7DADE63CE982299E04B79D227873D1


def test_signatures_verify_and_detect_tampering() -> None:
    d = p256.new_private_key()
    q = p256.multiply(d)
    sig = p256.sign(d, b"message")
    assert p256.verify(q, b"message", sig)
    assert not p256.verify(q, b"messagf", sig)
    assert not p256.verify(p256.multiply(d + 1), b"message", sig)


def test_der_integers_and_oids() -> None:
    assert x509.der_int(0) == b"\x02\x01\x00"
    assert x509.der_int(127) == b"\x02\x01\x7f"
    assert x509.der_int(128) == b"\x02\x02\x00\x80"
    assert x509.der_oid("1.2.840.10045.2.1") == bytes.fromhex("06072a8648ce3d0201")


def test_enrollment_id_format() -> None:
    eid = x509.enrollment_id(b"certificate")
    assert len(eid) == 97
    assert re.fullmatch(r"A-([0-9a-f]{2}:){31}[0-9a-f]{2}", eid)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not installed")
def test_openssl_accepts_the_chain_and_the_key(tmp_path: Path) -> None:
    ca = x509.Authority.generate()
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
    openssl("ec", "-inform", "der", "-in", "key.der", "-check", "-noout")
    # The private key matches the certificate's public key.
    from_key = openssl("ec", "-inform", "der", "-in", "key.der", "-pubout")
    from_cert = openssl("x509", "-in", "dev.pem", "-noout", "-pubkey")
    assert from_key == from_cert
