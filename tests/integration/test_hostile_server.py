"""The agent against a misbehaving server written for these tests (not the project's simulator).

One small threaded HTTP server on loopback, with a mode per misbehaviour: redirects (to another
host, and from https down to http), a secret echoed in an error body, an answer trickled byte
by byte, rate limiting, an authenticating proxy, broken or oversized answers, a connection
closed mid-body, HTTP/1.0 without Content-Length. The agent runs as a real process against a
sandbox root. Every mode checks the exit code, the end state, and that the value sent as the
verification key appears nowhere: not on stderr, in the journal, in `status --json`, nor at the
other host (which must receive nothing at all).
"""

from __future__ import annotations

import email.utils
import json
import shutil
import ssl
import stat
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, quote_plus

import pytest

from pep_agent.gateway.identity import NO_VERIFICATION_KEY
from tests.agentprocs import NO_INJECTION, SERVER_AWAY, agent_env, provision, run_agent, status
from tests.loopback import Handler, LoopbackServer, make_pki
from tests.simprocs import fcc_command

# With sealing off the agent sends this placeholder as the verification key: the tests treat
# it as the secret (the agent must mask whatever it sent in that field).
SECRET = NO_VERIFICATION_KEY
SERIAL = "HOSTILE-1"
TRICKLE_GAP = 0.1  # seconds between two trickled bytes
TRICKLE_BODY = json.dumps({"serialNumber": SERIAL, "enrollmentID": "E-1", "pad": "x" * 600})


class Hostile(LoopbackServer):
    """Answers every request according to `mode`; records what it received."""

    mode = "ok"
    trickled = 0  # bytes of TRICKLE_BODY sent before the client went away
    redirect_to = ""
    rate_limited = 0  # how many requests got a 429

    def __init__(self, handler: type[HostileHandler], **options: Any) -> None:
        self.requests: list[dict[str, Any]] = []  # path, query, headers, time of arrival
        super().__init__(handler, **options)

    def seen(self) -> str:
        """Everything this server received, as text, for the secret check."""
        return json.dumps(self.requests)


class HostileHandler(Handler):
    server: Hostile
    protocol_version = "HTTP/1.1"

    def get(self) -> None:
        route, _, raw = self.path.partition("?")
        query = {k: v[0] for k, v in parse_qs(raw, keep_blank_values=True).items()}
        self.server.requests.append({"path": self.path, "query": query, "at": time.monotonic(),
                                     "headers": dict(self.headers.items())})
        serial = query.get("serialNumber", SERIAL)
        getattr(self, "mode_" + self.server.mode.replace("-", "_"))(route, serial, query)

    # --- helpers

    def raw(self, data: bytes) -> None:
        self.wfile.write(data)
        self.close_connection = True

    # --- the modes

    def mode_ok(self, route: str, serial: str, query: dict[str, str]) -> None:
        self.answer(200, json.dumps({"serialNumber": serial, "enrollmentID": "E-1"}).encode())

    def mode_redirect(self, route: str, serial: str, query: dict[str, str]) -> None:
        self.answer(302, b"", "text/plain", Location=self.server.redirect_to + self.path)

    def mode_echo_secret(self, route: str, serial: str, query: dict[str, str]) -> None:
        body = f"invalid verificationKey {query.get('verificationKey')}"
        self.answer(400, body.encode(), "text/plain")

    def mode_trickle(self, route: str, serial: str, query: dict[str, str]) -> None:
        body = TRICKLE_BODY.encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        for i in range(len(body)):
            if self.server.stopping.wait(TRICKLE_GAP):
                return
            try:
                self.wfile.write(body[i:i + 1])
            except OSError:
                return  # the agent hung up, as it must
            self.server.trickled = max(self.server.trickled, i + 1)

    def mode_rate_limit(self, route: str, serial: str, query: dict[str, str]) -> None:
        # Two 429s (delay-seconds, then an HTTP-date), then a final refusal that ends the run.
        self.server.rate_limited += 1
        if self.server.rate_limited == 1:
            self.answer(429, b"slow down", "text/plain", Retry_After="1")
        elif self.server.rate_limited == 2:
            when = email.utils.formatdate(time.time() + 2, usegmt=True)
            self.answer(429, b"slow down", "text/plain", Retry_After=when)
        else:
            self.answer(400, b"enough", "text/plain")

    def mode_unauthorized(self, route: str, serial: str, query: dict[str, str]) -> None:
        self.answer(401, b"login required", "text/html", WWW_Authenticate='Basic realm="proxy"')

    def mode_bad_json(self, route: str, serial: str, query: dict[str, str]) -> None:
        self.answer(200, b'{"serialNumber": "' + serial.encode() + b'", ')

    def mode_other_serial(self, route: str, serial: str, query: dict[str, str]) -> None:
        self.answer(200, json.dumps({"serialNumber": "SOMEONE-ELSE",
                                     "enrollmentID": "E-OTHER"}).encode())

    def mode_huge(self, route: str, serial: str, query: dict[str, str]) -> None:
        size = 50 * 1024 * 1024
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(size))
        self.end_headers()
        chunk = b" " * 65536
        try:
            for _ in range(size // len(chunk)):
                if self.server.stopping.is_set():
                    return
                self.wfile.write(chunk)
        except OSError:
            return

    def mode_huge_unannounced(self, route: str, serial: str, query: dict[str, str]) -> None:
        self.raw(b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n")
        try:
            for _ in range(800):  # 50 MB, no length announced
                if self.server.stopping.is_set():
                    return
                self.wfile.write(b" " * 65536)
        except OSError:
            return

    def mode_close_mid_body(self, route: str, serial: str, query: dict[str, str]) -> None:
        body = json.dumps({"serialNumber": serial, "enrollmentID": "E-1"}).encode()
        self.raw(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\nConnection: close\r\n\r\n" % (len(body) + 100) + body)

    def mode_http10(self, route: str, serial: str, query: dict[str, str]) -> None:
        body = json.dumps({"serialNumber": serial, "enrollmentID": "E-10"}).encode()
        self.raw(b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n" + body)


@pytest.fixture
def start_hostile(loopback: Callable[..., LoopbackServer]) -> Callable[..., Hostile]:
    def start(mode: str = "ok", **options: Any) -> Hostile:
        server: Hostile = loopback(HostileHandler, kind=Hostile, **options)
        server.mode = mode
        return server

    return start


def run(tmp_path: Path, server: Hostile, **env: str) -> subprocess.CompletedProcess[str]:
    return provision(tmp_path / "root", server.url, SERIAL, fcc_command(),
                     env=agent_env(**{**NO_INJECTION, **env}), timeout=90)


def journal_text(root: Path) -> str:
    path = root / "userdata/pep-agent/state.json"
    return path.read_text() if path.exists() else ""


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        for form in (SECRET, quote(SECRET, safe=""), quote_plus(SECRET)):
            assert form not in text


def assert_failed(tmp_path: Path, out: subprocess.CompletedProcess[str], code: int,
                  *others: Hostile) -> dict[str, Any]:
    """Exit `code`, one line and no traceback, not provisioned, no secret anywhere."""
    root = tmp_path / "root"
    assert out.returncode == code, out.stderr
    assert "Traceback" not in out.stderr and "internal error" not in out.stderr
    doc = status(root)
    assert doc["state"] == "failed" and doc["error"]["code"] == code
    assert not doc["provisioned"]
    assert not (root / "userdata/pep-agent/response.json").exists()
    assert not list(root.rglob("identity.json"))
    journal = root / "userdata/pep-agent/state.json"
    assert stat.S_IMODE(journal.stat().st_mode) == 0o600
    assert_no_secret(out.stderr, out.stdout, journal_text(root), json.dumps(doc),
                     run_agent("status", "--root", str(root)).stdout)
    for other in others:
        assert other.requests == []
    return doc


# --- security ---------------------------------------------------------------------------------

def test_a_redirect_to_another_host_is_not_followed(
        tmp_path: Path, start_hostile: Callable[..., Hostile]) -> None:
    other = start_hostile("ok", host="127.0.0.2")
    server = start_hostile("redirect")
    server.redirect_to = other.url
    out = run(tmp_path, server)
    doc = assert_failed(tmp_path, out, 16, other)
    assert f"{other.url}/v3/identity" in doc["error"]["message"]
    assert len(server.requests) == 1  # a redirect is not a transient failure either


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_no_downgrade_from_https_to_http(tmp_path: Path,
                                         start_hostile: Callable[..., Hostile]) -> None:
    ca, cert, key = make_pki(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    other = start_hostile("ok", host="127.0.0.2")
    server = start_hostile("redirect", tls=context)
    server.redirect_to = other.url
    assert server.url.startswith("https://") and other.url.startswith("http://")
    out = run(tmp_path, server, PEP_CA_CERT=str(ca))
    assert len(server.requests) == 1  # TLS worked: the request reached the https server
    doc = assert_failed(tmp_path, out, 16, other)
    assert other.url in doc["error"]["message"]


def test_a_secret_echoed_in_an_error_body_is_redacted(
        tmp_path: Path, start_hostile: Callable[..., Hostile]) -> None:
    server = start_hostile("echo-secret")
    out = run(tmp_path, server)
    assert server.requests[0]["query"]["verificationKey"] == SECRET  # it was sent
    doc = assert_failed(tmp_path, out, 16)
    assert "invalid verificationKey [redacted]" in doc["error"]["message"]
    assert "[redacted]" in out.stderr


# --- deadlines and retries --------------------------------------------------------------------

def test_a_trickled_answer_is_cut_at_the_http_timeout(
        tmp_path: Path, start_hostile: Callable[..., Hostile]) -> None:
    server = start_hostile("trickle")
    out = run(tmp_path, server, PEP_HTTP_TIMEOUT="1", PEP_SERVER_DEADLINE="2")
    assert_failed(tmp_path, out, 14)
    assert "no complete answer" in out.stderr
    # Each byte came within the read timeout, yet the agent hung up long before the end.
    assert 0 < server.trickled < len(TRICKLE_BODY) // 2


def test_the_server_deadline_leaves_the_attempt_under_way_its_http_timeout(
        tmp_path: Path, start_hostile: Callable[..., Hostile]) -> None:
    # The deadline decides whether another attempt may start; the one that left gets the
    # HTTP timeout (a slow but successful answer on a busy machine is not thrown away).
    server = start_hostile("trickle")
    out = run(tmp_path, server, PEP_HTTP_TIMEOUT="3", PEP_SERVER_DEADLINE="0.5")
    assert_failed(tmp_path, out, 14)
    # One identity request; then (it may have injected FCC) the server's record is asked for.
    assert [r["path"].split("?")[0] for r in server.requests][:1] == ["/v3/identity"]
    assert sum(r["path"].startswith("/v3/identity") for r in server.requests) == 1
    # Cut at 0.5 s, about 5 bytes would have come (one per 0.1 s); by the HTTP timeout, ~30.
    assert 15 < server.trickled < len(TRICKLE_BODY) // 2


def test_429_is_retried_after_retry_after(tmp_path: Path,
                                          start_hostile: Callable[..., Hostile]) -> None:
    server = start_hostile("rate-limit")
    # Ordinary backoff would wait at most 0.1 s here: only Retry-After explains the gaps.
    out = run(tmp_path, server, PEP_RETRY_BASE="0.1", PEP_RETRY_CAP="5",
              PEP_SERVER_DEADLINE="30")
    assert_failed(tmp_path, out, 16)
    arrivals = [r["at"] for r in server.requests]
    assert len(arrivals) == 3
    assert arrivals[1] - arrivals[0] >= 1.0  # "Retry-After: 1"
    assert arrivals[2] - arrivals[1] >= 0.9  # an HTTP-date 2 s ahead, at 1 s resolution


def test_retry_after_beyond_the_deadline_gives_up_at_once(
        tmp_path: Path, start_hostile: Callable[..., Hostile]) -> None:
    server = start_hostile("rate-limit")
    out = run(tmp_path, server, PEP_RETRY_CAP="5", PEP_SERVER_DEADLINE="0.5")
    doc = assert_failed(tmp_path, out, 16)
    assert len(server.requests) == 1 and "429" in doc["error"]["message"]


def test_401_names_the_proxy_and_is_not_retried(tmp_path: Path,
                                                start_hostile: Callable[..., Hostile]) -> None:
    server = start_hostile("unauthorized")
    out = run(tmp_path, server)
    doc = assert_failed(tmp_path, out, 16)
    assert len(server.requests) == 1
    assert "proxy" in doc["error"]["hint"] and "pep server's log" not in out.stderr


# --- broken answers ---------------------------------------------------------------------------

def test_invalid_json(tmp_path: Path, start_hostile: Callable[..., Hostile]) -> None:
    server = start_hostile("bad-json")
    assert_failed(tmp_path, run(tmp_path, server), 17)


@pytest.mark.parametrize("mode", ["huge", "huge-unannounced"])
def test_a_50_mb_answer_is_refused(tmp_path: Path, start_hostile: Callable[..., Hostile],
                                   mode: str) -> None:
    server = start_hostile(mode)
    out = run(tmp_path, server)
    assert_failed(tmp_path, out, 17)
    assert "refused" in out.stderr


def test_a_connection_closed_mid_body_is_retried(
        tmp_path: Path, start_hostile: Callable[..., Hostile]) -> None:
    server = start_hostile("close-mid-body")
    out = run(tmp_path, server, **SERVER_AWAY)  # every answer is cut: the deadline ends it
    assert_failed(tmp_path, out, 14)
    assert len(server.requests) >= 2


def test_an_answer_for_another_serial_never_becomes_this_gateways_identity(
        tmp_path: Path, start_hostile: Callable[..., Hostile]) -> None:
    # What follows such an answer (giving up, or asking the server for this serial's
    # record) is the recovery's business; here only what must hold whatever it does.
    server = start_hostile("other-serial")
    out = run(tmp_path, server)
    root = tmp_path / "root"
    assert out.returncode not in (0, 1), out.stderr
    assert "Traceback" not in out.stderr and "internal error" not in out.stderr
    assert not status(root)["provisioned"]
    for installed in root.rglob("identity.json"):
        assert "SOMEONE-ELSE" not in installed.read_text()
    assert_no_secret(out.stderr, journal_text(root), json.dumps(status(root)))


def test_http10_without_content_length_is_read_to_the_end(
        tmp_path: Path, start_hostile: Callable[..., Hostile]) -> None:
    # A valid answer: taken by the pep-cli command, which needs no FCC on the other side.
    server = start_hostile("http10")
    out = run_agent("get-one-identity", "-s", SERIAL, "-i", "127.0.0.1", "-p", "4000",
                    "--server", server.url, "-o", str(tmp_path / "identity.json"),
                    env=agent_env(PEP_ROOT=str(tmp_path / "root")))
    assert out.returncode == 0, out.stderr
    saved = json.loads((tmp_path / "identity.json").read_text())
    assert saved == {"serialNumber": SERIAL, "enrollmentID": "E-10"}
    assert_no_secret(out.stderr, out.stdout)


# --- URLs: checked completely, before anything changes -----------------------------------------

@pytest.mark.parametrize("url", ["http://[::1", "http://exa mple.com", "ftp://pep:5151",
                                 "http://pep:99999", "http://user:pw@pep:5151", "http://"])
def test_an_invalid_server_url_is_a_configuration_error(tmp_path: Path, url: str) -> None:
    root = tmp_path / "root"
    out = provision(root, url, SERIAL, fcc_command(), timeout=60)
    assert out.returncode == 3, out.stderr
    assert out.stderr.count("\n") <= 2 and "Traceback" not in out.stderr
    assert "invalid server URL" in out.stderr and "pw" not in out.stderr
    assert not root.exists() or not any(root.rglob("*"))  # nothing written, nothing masked
    for command in ("get-enrollment-id", "get-verification-key"):
        cli = run_agent(command, "-s", SERIAL, "--server", url,
                        env=agent_env(PEP_ROOT=str(root)))
        assert cli.returncode == 3 and "Traceback" not in cli.stderr, cli.stderr
    listing = run_agent("list-enrollment-ids", "--server", url, "-f", str(tmp_path / "list"),
                        env=agent_env(PEP_ROOT=str(root)))
    assert listing.returncode == 3 and not list(tmp_path.glob("list.*"))


def test_an_invalid_api_address_is_a_configuration_error(tmp_path: Path,
                                                         start_hostile: Callable[..., Hostile],
                                                         ) -> None:
    server = start_hostile("ok")
    out = run_agent("get-one-identity", "-s", SERIAL, "-i", "127.0.0.1", "-p", "4000",
                    "-a", "https://api .example", "--server", server.url,
                    "-o", str(tmp_path / "identity.json"),
                    env=agent_env(PEP_ROOT=str(tmp_path / "root")))
    assert out.returncode == 3 and "apiAddress" in out.stderr, out.stderr
    assert server.requests == [] and not (tmp_path / "identity.json").exists()
