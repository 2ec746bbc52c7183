"""`sim server --update-auth-cert`: a certificate the real FCC would refuse is refused at start,
with the reason, instead of failing every injection later."""

from __future__ import annotations

import datetime
import ssl
from pathlib import Path

import pytest
from typer.testing import CliRunner

pytest.importorskip("cryptography")

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

import pep_agent.cli.sim  # noqa: F401  (registers `sim` on the app)
from pep_agent.cli.app import app
from pep_agent.exit_codes import Exit
from pep_agent.sim import server
from pep_agent.sim.x509 import fcc_refusal


def certificate(key: object, days: int) -> bytes:
    now = datetime.datetime.now(datetime.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "update CA")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key())  # type: ignore[attr-defined]
            .serial_number(1)
            .not_valid_before(now - datetime.timedelta(days=30))
            .not_valid_after(now + datetime.timedelta(days=days))
            .sign(key, hashes.SHA256()))  # type: ignore[arg-type]
    return cert.public_bytes(serialization.Encoding.DER)


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def start(path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[int, str, list[Path]]:
    """Run `sim server --update-auth-cert path`; serve is replaced: a test never listens."""
    served: list[Path] = []
    monkeypatch.setattr(server, "serve", lambda *a, **kw: served.append(kw["update_auth_cert"]))
    result = CliRunner().invoke(app, ["sim", "server", "--update-auth-cert", str(path)])
    return result.exit_code, result.output, served


def test_an_expired_certificate_is_refused_naming_why(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        ec_key: ec.EllipticCurvePrivateKey) -> None:
    path = tmp_path / "expired.pem"
    path.write_text(ssl.DER_cert_to_PEM_cert(certificate(ec_key, days=-1)))
    code, output, served = start(path, monkeypatch)
    assert code == Exit.USAGE and served == []
    assert "--update-auth-cert" in output and "expired on" in output
    assert "ReturnStatus 13" in output


def test_a_certificate_fcc_cannot_parse_is_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "rsa.der"
    path.write_bytes(certificate(rsa.generate_private_key(65537, 2048), days=4000))
    code, output, served = start(path, monkeypatch)
    assert code == Exit.USAGE and served == []
    assert "cannot parse" in output and "ReturnStatus 18" in output


def test_a_good_certificate_starts_the_server(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        ec_key: ec.EllipticCurvePrivateKey) -> None:
    path = tmp_path / "good.der"
    der = certificate(ec_key, days=4000)
    path.write_bytes(der)
    assert fcc_refusal(der) is None
    code, output, served = start(path, monkeypatch)
    assert code == 0, output
    assert served == [path]
