"""The cases where an identity could be lost, each as it reached a user: an identity the
server handed out is never thrown away, whatever ends a run (a signal, a power cut, exit 14 and
its rerun, a full state disk, a bad or contradictory answer, a slow FCC). Every test ends with
the wasted-identity invariant of tests/endstate.py."""

from __future__ import annotations

import json
import random
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.agentprocs import SERVER_AWAY, agent_env, free_port, provision
from tests.endstate import (
    MCC,
    STATE_DIR,
    assert_no_wasted_identity,
    end_leftover,
    end_state,
    fcc_process,
    identity_requests,
    identity_statuses,
    journal,
    provision_argv,
    start_agent,
    wait_until,
)
from tests.loopback import Handler, LoopbackServer, replying
from tests.simprocs import SimServer, fcc_command, start_server


def _fcc(root: Path, parsec: bool, fault: str | None = None) -> str:
    return fcc_command(parsec=parsec, mcc_config=root / MCC if parsec else None, fault=fault)


# --- a signal or a power cut while the 200 is in flight --------------------------------

@pytest.mark.parametrize("sig", ["KILL", "TERM"])
def test_signal_after_the_injection_before_the_answer_is_saved(tmp_path: Path,
                                                               server: SimServer,
                                                               sig: str) -> None:
    root, serial = tmp_path / "gw", f"GW-SIG-{sig}"
    out = provision(root, server.url, serial, fcc_command(),
                    crash_at="request-identity:answered", crash_signal=sig)
    assert out.returncode in (-getattr(signal, f"SIG{sig}"), 128 + getattr(signal, f"SIG{sig}")
                              ), out.stderr
    assert not (root / STATE_DIR / "response.json").exists()
    assert assert_no_wasted_identity(server, {serial: root}) == {serial: "recovery-pending"}
    rerun = provision(root, server.url, serial, fcc_command())
    assert rerun.returncode == 0, rerun.stderr
    assert end_state(root, server, serial) == "provisioned"
    assert journal(root).get("rebuilt_answer") is True
    assert len(identity_requests(server, serial)) == 1 and 409 not in identity_statuses(server)
    assert assert_no_wasted_identity(server, {serial: root}) == {serial: "installed"}


# --- the server unreachable during the recovery: exit 14, and the rerun recovers -------

def test_recovery_with_the_server_away_exits_14_and_the_rerun_recovers(tmp_path: Path,
                                                                        server: SimServer
                                                                        ) -> None:
    root, serial = tmp_path / "gw", "GW-AWAY"
    crashed = provision(root, server.url, serial, fcc_command(),
                        crash_at="request-identity:answered")
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    away = provision(root, f"http://127.0.0.1:{free_port()}", serial, fcc_command(),
                     env=agent_env(**SERVER_AWAY))
    assert away.returncode == 14, away.stderr
    assert "credentials stay staged" in away.stderr
    assert assert_no_wasted_identity(server, {serial: root}) == {serial: "recovery-pending"}
    rerun = provision(root, server.url, serial, fcc_command())
    assert rerun.returncode == 0, rerun.stderr
    assert end_state(root, server, serial) == "provisioned"
    assert len(identity_requests(server, serial)) == 1
    assert assert_no_wasted_identity(server, {serial: root}) == {serial: "installed"}


# --- cases 3 and 6: a misbehaving server of our own --------------------------------------------

class Misbehaving:
    """Forwards to real simulators, then lies: `lie(n, reply)` rewrites the n-th identity
    answer (1-based); `inject_via` sends the identity requests it lies about elsewhere."""

    def __init__(self, honest: SimServer,
                 lie: Callable[[int, requests.Response], tuple[int, bytes]],
                 inject_via: SimServer | None = None) -> None:
        self.honest, self.lie, self.inject_via = honest, lie, inject_via
        self.count = 0

    def get(self, h: Handler) -> None:
        if h.path.lower().startswith("/v3/identity"):
            self.count += 1
            upstream = self.inject_via if self.inject_via is not None and self.count == 1 \
                else self.honest
            reply = requests.get(upstream.url + h.path, timeout=60)
            status, body = self.lie(self.count, reply)
        else:
            reply = requests.get(self.honest.url + h.path, timeout=60)
            status, body = reply.status_code, reply.content
        h.answer(status, body, "application/json" if body.startswith(b"{") else "text/plain")


def _for_another_serial(n: int, reply: requests.Response) -> tuple[int, bytes]:
    doc: dict[str, Any] = reply.json()
    doc["serialNumber"] = "SOMEONE-ELSE"
    return 200, json.dumps(doc).encode()


def _without_enrollment_id(n: int, reply: requests.Response) -> tuple[int, bytes]:
    doc: dict[str, Any] = reply.json()
    del doc["enrollmentID"]
    return 200, json.dumps(doc).encode()


@pytest.mark.parametrize("lie", [_for_another_serial, _without_enrollment_id],
                         ids=["200-for-another-serial", "200-without-enrollment-id"])
def test_a_bad_200_keeps_the_credentials_and_recovers_our_record(
        tmp_path: Path, server: SimServer, loopback: Callable[..., LoopbackServer],
        lie: Callable[[int, requests.Response], tuple[int, bytes]]) -> None:
    """Case 3: the server injected FCC and holds a record, whatever its answer said."""
    url = loopback(replying(Misbehaving(server, lie).get)).url
    root, serial = tmp_path / "gw", "GW-BAD-200"
    out = provision(root, url, serial, fcc_command())
    assert out.returncode == 0, out.stderr
    assert "failed the checks" in out.stderr
    assert end_state(root, server, serial) == "provisioned"
    assert len(identity_requests(server, serial)) == 1
    assert assert_no_wasted_identity(server, {serial: root}) == {serial: "installed"}


def test_a_500_while_fcc_exited_0_is_the_servers_verdict(
        tmp_path: Path, server: SimServer, loopback: Callable[..., LoopbackServer]) -> None:
    """Case 6: the server says the injection failed (and deleted its record) although FCC took
    the credentials: they are discarded, FCC restarted, the request retried; no record lookups
    and no 404 retried as if it were transient."""
    elsewhere = start_server(tmp_path / "elsewhere")

    def fail_first(n: int, reply: requests.Response) -> tuple[int, bytes]:
        return (500, b"Make sure you are running factory-configurator-client") if n == 1 \
            else (reply.status_code, reply.content)

    url = loopback(replying(Misbehaving(server, fail_first, inject_via=elsewhere).get)).url
    try:
        root, serial = tmp_path / "gw", "GW-500"
        out = provision(root, url, serial, fcc_command(),
                        env=agent_env(PEP_INJECTION_RETRIES="1", PEP_SERVER_DEADLINE="30"))
        assert out.returncode == 0, out.stderr
        assert "restarting FCC (1/1)" in out.stderr
        assert "discarding the staged credentials" in out.stderr
        # Before the checks below, which read the record themselves.
        assert not [e for e in server.get("/v3/requestLog").json()
                    if "/v3/enrollment-id" in e["url"]], "a 500 needs no record lookup"
        assert end_state(root, server, serial) == "provisioned"
        assert json.loads((root / "userdata/edge_gw_config/identity.json").read_text())[
            "enrollmentID"] == server.get("/v3/enrollment-id", serialNumber=serial).text
        assert assert_no_wasted_identity(server, {serial: root}) == {serial: "installed"}
    finally:
        elsewhere.stop()


# --- a lost answer and an FCC slower than 5 s to exit ---------------------------------

@pytest.mark.parametrize("parsec", [False, True], ids=["pal", "parsec"])
def test_lost_answer_and_a_slow_fcc(tmp_path: Path, server: SimServer, parsec: bool) -> None:
    root, serial = tmp_path / "gw", f"GW-SLOW-FCC-{int(parsec)}"
    release = tmp_path / "release-fcc"
    server.set_faults(drop_after_next=1)
    env = agent_env(PEP_SIM_FCC_RELEASE=str(release), PEP_FCC_EXIT_TIMEOUT="60",
                    PEP_SERVER_DEADLINE="60")
    agent = start_agent(provision_argv(root, server.url, serial,
                                       _fcc(root, parsec, "pause-after-exchange"))
                        + (["--parsec"] if parsec else []), tmp_path / "agent", env)
    fcc = None
    try:
        wait_until("the server injected FCC", lambda: server.get(
            "/v3/enrollment-id", serialNumber=serial).status_code == 200, 60,
            alive=agent)
        fcc = fcc_process(journal(root))
        # The scenario: FCC takes 7 s to exit after the exchange (more than the old fixed 5 s).
        time.sleep(7)
        release.touch()
        assert agent.wait(90) == 0, agent.err()
        if not parsec:
            # Staged credentials showed the injection: no second request at all.
            assert end_state(root, server, serial) == "provisioned"
            assert len(identity_requests(server, serial)) == 1
        else:
            # With Parsec only FCC's exit tells: a retry may meet our own record's 409.
            assert (root / MCC / "pst").is_dir()
            assert set(identity_statuses(server)) <= {409}
        assert assert_no_wasted_identity(server, {serial: root}) == {serial: "installed"}
    finally:
        agent.kill()
        end_leftover(fcc)


# --- the randomized crash test -----------------------------------------------------------------

TRIALS = 10
TRIALS_BUDGET = 80.0  # seconds; trials stop early rather than run past it (or the timeout)


@pytest.mark.timeout(TRIALS_BUDGET + 60)  # the last trial, started within the budget, ends
def test_random_kills_never_waste_an_identity(tmp_path: Path, server: SimServer,
                                              rng: random.Random) -> None:
    """kill -9 or SIGTERM at a random moment of a provision, then a rerun, TRIALS times; some
    with a slow server so that the signal lands while the request (and the 200) is in flight.
    The moments come from the rng fixture: PEP_TEST_SEED replays a run."""
    env = agent_env(PEP_FCC_EXIT_TIMEOUT="5", PEP_SERVER_DEADLINE="20")
    started, done, wasted, outcomes = time.monotonic(), 0, 0, []
    for trial in range(TRIALS):
        if time.monotonic() - started > TRIALS_BUDGET:
            break
        root, serial = tmp_path / f"gw{trial}", f"GW-RANDOM-{trial}"
        sig = rng.choice([signal.SIGKILL, signal.SIGTERM])
        # A slow server, before the injection or after it (the 200 is then in flight while
        # FCC already holds the credentials).
        delay, answer_delay = rng.choice([(0.0, 0.0), (1.5, 0.0), (0.0, 1.5), (0.0, 1.5)])
        server.set_faults(delay=delay, answer_delay=answer_delay)
        agent = start_agent(provision_argv(root, server.url, serial, fcc_command()),
                            tmp_path / f"agent{trial}", env)
        # A run takes about 1.2 s on an idle machine, plus the server's delay.
        when = rng.uniform(0.2, 1.3 + delay + answer_delay)
        ended = agent.process.poll() is not None
        deadline = time.monotonic() + when
        while not ended and time.monotonic() < deadline:
            time.sleep(0.05)
            ended = agent.process.poll() is not None
        if not ended:
            agent.process.send_signal(sig)
        first = agent.wait(60)
        leftover = fcc_process(journal(root))
        # systemd restarts the unit RestartSec (30 s) later: by then the server has finished
        # with the killed run's request. A rerun at once would meet that record mid-injection
        # (409, and 404 for its enrollment id), which reads as an unfinished record.
        if delay or answer_delay:
            time.sleep(delay + answer_delay + 1.0)  # and the factory tool's reconnects
        server.set_faults(delay=0, answer_delay=0)
        rerun = provision(root, server.url, serial, fcc_command(), env=env)
        end_leftover(leftover)
        try:
            verdict = assert_no_wasted_identity(server, {serial: root})[serial]
        except AssertionError:
            verdict = "WASTED"
            wasted += 1
        outcomes.append(f"{trial}: {sig.name} at {when:.2f} s, delays {delay:g}/{answer_delay:g} s"
                        f" -> exit "
                        f"{first}, rerun {rerun.returncode}, {verdict}")
        done += 1
    print(f"\n{done} trials, wasted identities: {wasted}\n" + "\n".join(outcomes))
    assert done >= 3, "too few trials ran to mean anything"
    assert wasted == 0, "\n".join(outcomes)
    assert all(o.endswith("rerun 0, installed") for o in outcomes), "\n".join(outcomes)
