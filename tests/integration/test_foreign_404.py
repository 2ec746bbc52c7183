"""A 404 that is not the pep server's during the recovery: the credentials stay.

After an injection may have happened, the agent asks GET /v3/enrollment-id; only the pep
server's own 404 (`Not found!`) says it holds no record, and only then are FCC's staged
credentials discarded. A 404 from anything else (a wrong URL prefix, a proxy's page, another
web server at that port, an empty body) says nothing about the record: everything stays, the
run says the answer is not a pep server's and to check the server URL, and a rerun against
the real server recovers. The agent, the simulated server and FCC run as real processes;
the foreign servers are loopback servers of the test. Every test ends with the
wasted-identity invariant.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path

import pytest
import requests

from pep_agent.exit_codes import Exit
from tests.agentprocs import agent_env, provision, run_agent
from tests.endstate import (
    IDENTITY,
    MCC,
    STATE_DIR,
    assert_no_wasted_identity,
    edge_core_ops,
    end_state,
    identity_requests,
    journal,
)
from tests.loopback import Handler, LoopbackServer, replying
from tests.simprocs import SimServer, fcc_command, start_server

NGINX_PAGE = (b"<html>\r\n<head><title>404 Not Found</title></head>\r\n<body>\r\n<center><h1>"
              b"404 Not Found</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n"
              b"</html>\r\n")


def _answering_404(body: bytes, ctype: str) -> Callable[[Handler], None]:
    return lambda h: h.answer(404, body, ctype)


FOREIGN = {
    "empty-body": (b"", "text/plain"),
    "proxy-page": (NGINX_PAGE, "text/html"),
}


def _foreign_url(kind: str, server: SimServer,
                 loopback: Callable[..., LoopbackServer]) -> str:
    if kind == "wrong-prefix":
        # The pep server itself, under a path it does not serve: its router's own HTML 404.
        return f"{server.url}/pep"
    return loopback(replying(_answering_404(*FOREIGN[kind]))).url


@pytest.mark.parametrize("kind", ["empty-body", "proxy-page", "wrong-prefix"])
def test_a_foreign_404_after_an_injection_keeps_the_credentials(
        tmp_path: Path, server: SimServer, loopback: Callable[..., LoopbackServer],
        kind: str) -> None:
    root, serial = tmp_path / "gw", f"GW-FOREIGN-{kind.upper()}"
    crashed = provision(root, server.url, serial, fcc_command(),
                        crash_at="request-identity:answered")
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    assert assert_no_wasted_identity(server, {serial: root}) == {serial: "recovery-pending"}

    foreign = _foreign_url(kind, server, loopback)
    out = provision(root, foreign, serial, fcc_command())
    # Not "no record" (which discards): the record cannot be read, everything stays and the
    # unit runs again.
    assert out.returncode == int(Exit.SERVER_UNREACHABLE), out.stderr
    assert "discarding" not in out.stderr and "not found on the server" not in out.stderr
    assert f"{foreign}/v3/enrollment-id answered 404 with " in out.stderr
    assert "not a pep server's answer; check the server URL (--server / PEP_SERVER_URL)" \
        in out.stderr
    assert "credentials stay staged" in out.stderr
    assert journal(root)["error"]["code"] == int(Exit.SERVER_UNREACHABLE)
    assert assert_no_wasted_identity(server, {serial: root}) == {serial: "recovery-pending"}

    rerun = provision(root, server.url, serial, fcc_command())
    assert rerun.returncode == 0, rerun.stderr
    assert end_state(root, server, serial) == "provisioned"
    assert journal(root).get("rebuilt_answer") is True
    assert len(identity_requests(server, serial)) == 1
    assert assert_no_wasted_identity(server, {serial: root}) == {serial: "installed"}


class LostAnswer:
    """Forwards to the simulated server, but answers the first identity request 502 after the
    injection (an answer lost on the way), and every enrollment-id lookup with `lookup`
    (None: the server's own answer, as express labels it: text/html)."""

    def __init__(self, honest: SimServer, *, inject_via: SimServer | None = None,
                 lookup: tuple[bytes, str] | None = None) -> None:
        self.honest, self.inject_via, self.lookup = honest, inject_via, lookup
        self.identity_requests = 0
        self.lookups: list[tuple[int, bytes]] = []

    def get(self, h: Handler) -> None:
        path = h.path.lower()
        if path.startswith("/v3/identity"):
            self.identity_requests += 1
            first = self.identity_requests == 1
            upstream = self.inject_via if first and self.inject_via else self.honest
            reply = requests.get(upstream.url + h.path, timeout=120)
            if first:
                h.answer(502, b"<html><body>502 Bad Gateway</body></html>", "text/html")
            else:
                h.answer(reply.status_code, reply.content,
                         reply.headers.get("Content-Type", "application/json"))
            return
        if path.startswith("/v3/enrollment-id") and self.lookup is not None:
            self.lookups.append((404, self.lookup[0]))
            h.answer(404, *self.lookup)
            return
        reply = requests.get(self.honest.url + h.path, timeout=60)
        self.lookups.append((reply.status_code, reply.content))
        h.answer(reply.status_code, reply.content + b"\n", "text/html; charset=utf-8")


def test_a_foreign_404_in_the_run_that_lost_the_answer_keeps_the_credentials(
        tmp_path: Path, server: SimServer, loopback: Callable[..., LoopbackServer]) -> None:
    """The server injected FCC and holds the record; the answer is lost (502) and the lookup
    that follows meets a proxy's 404 page: nothing is discarded, FCC is not restarted."""
    proxy = LostAnswer(server, lookup=(NGINX_PAGE, "text/html"))
    url = loopback(replying(proxy.get)).url
    root, serial = tmp_path / "gw", "GW-FOREIGN-SAME-RUN"
    out = provision(root, url, serial, fcc_command(), env=agent_env(PEP_INJECTION_RETRIES="1"))
    assert out.returncode == int(Exit.SERVER_ERROR), out.stderr  # the request's own error
    assert proxy.lookups and all(code == 404 for code, _ in proxy.lookups)
    assert proxy.identity_requests == 1, "FCC restarted and asked again after a foreign 404"
    assert "discarding" not in out.stderr
    # The operator is told why the credentials stay: the lookup's answer, with its URL.
    assert f"{url}/v3/enrollment-id answered 404 with " in out.stderr
    assert "the credentials stay staged" in out.stderr
    # The run ends with the request's own error (the flow's rule for a failed request whose
    # record cannot be read); the injection stays journalled and the credentials staged.
    assert journal(root).get("injection"), "the journal no longer expects a recovery"
    assert not (root / STATE_DIR / "provisioned").exists()
    assert assert_no_wasted_identity(server, {serial: root}) == {serial: "recovery-pending"}

    rerun = provision(root, server.url, serial, fcc_command())
    assert rerun.returncode == 0, rerun.stderr
    assert end_state(root, server, serial) == "provisioned"
    assert assert_no_wasted_identity(server, {serial: root}) == {serial: "installed"}


def test_the_pep_servers_not_found_still_discards(
        tmp_path: Path, server: SimServer, loopback: Callable[..., LoopbackServer]) -> None:
    """The injection went to another server (which alone holds that record) and its answer
    was lost; the server the agent asks answers its own `Not found!` (text/html, a trailing
    newline, as express sends it): the staged credentials are discarded, FCC restarted and
    asked again, and the gateway ends provisioned with this server's identity."""
    elsewhere = start_server(tmp_path / "elsewhere")
    try:
        proxy = LostAnswer(server, inject_via=elsewhere)
        url = loopback(replying(proxy.get)).url
        root, serial = tmp_path / "gw", "GW-NOT-FOUND"
        out = provision(root, url, serial, fcc_command(),
                        env=agent_env(PEP_INJECTION_RETRIES="1"))
        assert out.returncode == 0, out.stderr
        assert (404, b"Not found!") in proxy.lookups
        assert "discarding the staged credentials" in out.stderr
        assert "restarting FCC (1/1)" in out.stderr
        assert proxy.identity_requests == 2
        assert end_state(root, server, serial) == "provisioned"
        assert assert_no_wasted_identity(server, {serial: root}) == {serial: "installed"}
    finally:
        elsewhere.stop()


@pytest.mark.parametrize("command", ["get-enrollment-id", "get-verification-key"])
@pytest.mark.parametrize("kind", ["empty-body", "proxy-page", "wrong-prefix"])
def test_the_lookup_commands_do_not_call_a_foreign_404_not_found(
        server: SimServer, loopback: Callable[..., LoopbackServer], command: str,
        kind: str) -> None:
    foreign = _foreign_url(kind, server, loopback)
    out = run_agent(command, "-s", "GW-1", "--server", foreign)
    assert (out.returncode, out.stdout) == (int(Exit.BAD_RESPONSE), ""), out.stderr
    route = command.removeprefix("get-")
    assert f"{foreign}/v3/{route} answered 404 with " in out.stderr
    assert "not found on the server" not in out.stderr
    assert "no deployed gateway" not in out.stderr
    assert "hint: the pep server answers 404 only with the body \"Not found!\"" in out.stderr
    # The pep server's own answer is still "not found".
    real = run_agent(command, "-s", "GW-1", "--server", server.url)
    assert real.returncode == int(Exit.NOT_FOUND), real.stderr
    assert "not found on the server" in real.stderr


def _identity_files(root: Path) -> dict[str, bytes]:
    """The installed identity: identity.json and FCC's store in mcc_config."""
    files = {IDENTITY: (root / IDENTITY).read_bytes()}
    files.update({str(p.relative_to(root)): p.read_bytes()
                  for p in sorted((root / MCC).rglob("*")) if p.is_file()})
    return files


def test_reprovision_stops_at_a_foreign_404(tmp_path: Path, server: SimServer,
                                            loopback: Callable[..., LoopbackServer]) -> None:
    """reprovision asks whether the server holds a record before anything moves: a 404 that
    is not the pep server's is no "no record", and nothing changes."""
    root, serial = tmp_path / "gw", "GW-FOREIGN-REPRO"
    assert provision(root, server.url, serial, fcc_command()).returncode == 0
    before = _identity_files(root)
    foreign = _foreign_url("proxy-page", server, loopback)
    out = run_agent("reprovision", "--root", str(root), "--server", foreign, "--serial", serial,
                    "--interface", "lo", "--no-reboot", "--fcc-command", fcc_command(), "--yes",
                    env=agent_env())
    assert out.returncode == int(Exit.BAD_RESPONSE), out.stderr
    assert f"{foreign}/v3/enrollment-id answered 404 with " in out.stderr
    assert "nothing was changed" in out.stderr
    assert _identity_files(root) == before
    assert (root / STATE_DIR / "provisioned").read_text() == f"{serial}\n"
    assert not list(root.rglob("*.pep-previous"))
    assert end_state(root, server, serial) == "provisioned"
    assert assert_no_wasted_identity(server, {serial: root}) == {serial: "installed"}


def test_a_lost_state_directory_and_a_foreign_404_change_nothing(
        tmp_path: Path, server: SimServer, loopback: Callable[..., LoopbackServer]) -> None:
    """No marker beside a working identity: the agent asks the server whether it holds it. A
    404 that is not the pep server's cannot say "an old identity": nothing is replaced."""
    root, serial = tmp_path / "gw", "GW-FOREIGN-VOLATILE"
    assert provision(root, server.url, serial, fcc_command()).returncode == 0
    before = _identity_files(root)
    for name in ("provisioned", "state.json", "sandbox-services.log"):
        (root / STATE_DIR / name).unlink()
    foreign = _foreign_url("empty-body", server, loopback)
    out = provision(root, foreign, serial, fcc_command())
    assert out.returncode == int(Exit.UNCONFIRMED), out.stderr
    assert f"{foreign}/v3/enrollment-id answered 404 with an empty body" in out.stderr
    assert "nothing was changed; edge-core keeps running on the installed identity" in out.stderr
    assert _identity_files(root) == before
    assert "hold" not in edge_core_ops(root)
    assert len(identity_requests(server, serial)) == 1
    assert assert_no_wasted_identity(server, {serial: root}) == {serial: "installed"}
