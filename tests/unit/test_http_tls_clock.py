"""TLS failures against a real TLS server on loopback: a certificate not valid at this moment
names the clock; any other verify failure points at --ca-cert. And a connect timeout says so.

Certificates are made with `cryptography` (the sim extra) for each test module.
"""

from __future__ import annotations

import contextlib
import datetime
import socket
import socketserver
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pep_agent.errors import ServerUnreachableError
from pep_agent.exit_codes import Exit
from pep_agent.system.http import PepClient
from tests.loopback import LoopbackServer

x509 = pytest.importorskip("cryptography.x509")
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402

NOW = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
DAY = datetime.timedelta(days=1)


def _cert(key: ec.EllipticCurvePrivateKey, cn: str, issuer_key: ec.EllipticCurvePrivateKey,
          issuer_cn: str, start: datetime.datetime, end: datetime.datetime, *,
          ca: bool) -> bytes:
    import ipaddress

    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
               .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_cn)]))
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(start).not_valid_after(end)
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
               # The key identifiers: Python 3.13's default context verifies strictly (RFC
               # 5280), and a chain without them fails for that, not for its dates.
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                              critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                   issuer_key.public_key()), critical=False))
    if ca:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=False, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
            encipher_only=False, decipher_only=False), critical=True)
    else:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
    cert = builder.sign(issuer_key, hashes.SHA256())
    return cert.public_bytes(serialization.Encoding.PEM)


class Handshake(socketserver.BaseRequestHandler):
    """Completes (or fails) the TLS handshake, nothing else."""

    def handle(self) -> None:
        self.request.settimeout(5)
        with contextlib.suppress(OSError):  # ssl.SSLError: the client refused our certificate
            self.request.do_handshake()
            self.request.recv(1)


@pytest.fixture(scope="module")
def ca() -> tuple[ec.EllipticCurvePrivateKey, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    # The CA is valid across every clock these tests meet: only the server's certificate is not.
    return key, _cert(key, "test CA", key, "test CA", NOW - 3650 * DAY, NOW + 3650 * DAY,
                      ca=True)


def _serve_cert(tmp: Path, ca: tuple[ec.EllipticCurvePrivateKey, bytes],
                start: datetime.datetime, end: datetime.datetime) -> Iterator[LoopbackServer]:
    """A loopback TLS server whose certificate, signed by `ca`, is valid from start to end."""
    key = ec.generate_private_key(ec.SECP256R1())
    (tmp / "server.pem").write_bytes(
        _cert(key, "pep", ca[0], "test CA", start, end, ca=False) + key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp / "server.pem")
    with LoopbackServer(Handshake, tls=context) as server:
        yield server


def _fail(server: LoopbackServer, ca_file: Path) -> ServerUnreachableError:
    client = PepClient(server.url, timeout=10, ca_cert=ca_file)
    with pytest.raises(ServerUnreachableError) as e:
        client.enrollment_id("SN-1")
    assert e.value.code == Exit.SERVER_UNREACHABLE and not e.value.sent
    return e.value


@pytest.fixture
def ca_file(tmp_path: Path, ca: tuple[ec.EllipticCurvePrivateKey, bytes]) -> Path:
    path = tmp_path / "ca.pem"
    path.write_bytes(ca[1])
    return path


@pytest.mark.parametrize("start, end, reason", [
    (NOW + 365 * DAY, NOW + 730 * DAY, "certificate is not yet valid"),
    (NOW - 730 * DAY, NOW - DAY, "certificate has expired"),
])
def test_a_date_failure_names_the_clock(tmp_path: Path, ca: tuple[ec.EllipticCurvePrivateKey,
                                                                   bytes], ca_file: Path,
                                        start: datetime.datetime, end: datetime.datetime,
                                        reason: str) -> None:
    for server in _serve_cert(tmp_path, ca, start, end):
        err = _fail(server, ca_file)
        assert reason in err.message
        assert f"clock, which reads {time.strftime('%Y-%m-%d', time.gmtime())}" in err.message
        assert "1970" in err.hint and "NTP" in err.hint and "--ca-cert" not in err.hint


def test_an_unknown_authority_keeps_the_ca_cert_hint(tmp_path: Path,
                                                     ca: tuple[ec.EllipticCurvePrivateKey,
                                                               bytes]) -> None:
    other = ec.generate_private_key(ec.SECP256R1())
    other_file = tmp_path / "other-ca.pem"
    other_file.write_bytes(_cert(other, "other CA", other, "other CA", NOW - DAY, NOW + DAY,
                                 ca=True))
    for server in _serve_cert(tmp_path, ca, NOW - DAY, NOW + DAY):
        err = _fail(server, other_file)
        assert "certificate verify failed" in err.message and "clock" not in err.message
        assert "--ca-cert" in err.hint


def test_a_connect_timeout_says_it_could_not_connect() -> None:
    """A listener whose accept queue is full drops further SYNs: the connection never opens."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=0)
    port = listener.getsockname()[1]
    fillers = []
    try:
        for _ in range(4):  # more than the queue holds; extra ones stay in SYN-SENT
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", port))
            fillers.append(s)
        time.sleep(0.2)
        client = PepClient(f"http://127.0.0.1:{port}", timeout=20, connect_timeout=0.5)
        started = time.monotonic()
        with pytest.raises(ServerUnreachableError) as e:
            client.enrollment_id("SN-1")
        assert time.monotonic() - started < 10
        assert f"could not connect to http://127.0.0.1:{port} within 0.5 s" in e.value.message
        assert "no complete answer" not in e.value.message
        assert not e.value.sent and e.value.transient
    finally:
        for s in fillers:
            s.close()
        listener.close()
