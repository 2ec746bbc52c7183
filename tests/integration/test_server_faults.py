"""Honest retries: the agent against a pep server that is down, slow, failing or cut off.

Each test drives the simulated server's fault knobs, runs the agent as a process and judges
the gateway's end state (provisioned, or not provisioned with the documented exit code) and
the server's request log (how often the agent asked, and what it was answered).
"""

from __future__ import annotations

import shlex
import signal
from pathlib import Path
from typing import Any

import pytest
import requests

from pep_agent.sim import esfs_codec
from tests.agentprocs import agent_env, free_port, provision, status
from tests.endstate import (
    STATE_DIR,
    Background,
    assert_no_wasted_identity,
    end_leftover,
    end_state,
    fcc_process,
    has_retried,
    identity_requests,
    identity_statuses,
    journal,
    provision_argv,
    start_agent,
    wait_until,
)
from tests.simprocs import SimServer, fcc_argv, fcc_command, start_fcc, start_server

# The server comes up only after the agent has failed this many identity requests, backing off
# between them: it must keep trying without giving up or wasting anything.
FAILURES_BEFORE_THE_SERVER = 3


def test_drop_after_next_knob_injects_then_cuts_the_answer(server: SimServer,
                                                           tmp_path: Path) -> None:
    """The simulator itself: the record is deployed and FCC done, yet no answer arrives."""
    assert server.set_faults(drop_after_next=1)["drop_after_next"] == 1
    fcc = start_fcc(tmp_path / "fcc")
    try:
        with pytest.raises(requests.ConnectionError):
            server.get("/v3/identity", serialNumber="GW-cut", ip=fcc.ip, port=fcc.port)
        assert fcc.wait_exit(30) == 0
        working = fcc.cwd / "pal/WORKING"
        assert esfs_codec.read_item(working, "CfgParam_mbed.EndpointName") == b"GW-cut"
        assert server.get("/v3/enrollment-id", serialNumber="GW-cut").status_code == 200
        assert server.faults()["drop_after_next"] == 0
        # Only a successful injection consumes the knob: a 409 is answered normally.
        server.set_faults(drop_after_next=1)
        again = server.get("/v3/identity", serialNumber="GW-cut", ip=fcc.ip, port=fcc.port)
        assert again.status_code == 409
        assert server.faults()["drop_after_next"] == 1
    finally:
        fcc.stop()


def test_server_down_at_start_and_up_later(tmp_path: Path) -> None:
    port = free_port()
    root, serial = tmp_path / "gw", "GW-LATE-SERVER"
    env = agent_env(PEP_SERVER_DEADLINE="90", PEP_RETRY_BASE="0.5", PEP_RETRY_CAP="3")
    agent = start_agent(provision_argv(root, f"http://127.0.0.1:{port}", serial,
                                       fcc_command()), tmp_path / "agent", env)
    srv = None
    try:
        wait_until(f"the agent's failed attempt {FAILURES_BEFORE_THE_SERVER}",
                   lambda: has_retried(root, FAILURES_BEFORE_THE_SERVER), 60,
                   alive=agent)
        srv = start_server(tmp_path / "server", port=port)
        assert agent.wait(60) == 0, agent.err()
        assert end_state(root, srv, serial) == "provisioned"
        assert_no_wasted_identity(srv, {serial: root})
        attempts = status(root)["attempt"]
        print(f"\nserver down for {FAILURES_BEFORE_THE_SERVER} attempts: provisioned at "
              f"attempt {attempts}")
        assert attempts > FAILURES_BEFORE_THE_SERVER
        assert len(identity_requests(srv, serial)) == 1
    finally:
        agent.kill()
        if srv is not None:
            srv.stop()


@pytest.mark.parametrize(("knobs", "attempts", "requests_seen", "env"), [
    ({"fail_next": 2}, 3, 3, {}),
    ({"fail_next": 1, "fail_status": 502}, 2, 2, {}),
    ({"drop_next": 1}, 2, 2, {}),
    ({"fail_injection_next": 1}, 2, 2, {"PEP_INJECTION_RETRIES": "2"}),
], ids=["503-twice", "502-once", "dropped-before-processing", "injection-failed-once"])
def test_retried_then_provisioned(tmp_path: Path, knobs: dict[str, Any], attempts: int,
                                  requests_seen: int, env: dict[str, str]) -> None:
    srv = start_server(tmp_path / "server", **knobs)
    try:
        root, serial = tmp_path / "gw", "GW-RETRY"
        out = provision(root, srv.url, serial, fcc_command(),
                        env=agent_env(PEP_SERVER_DEADLINE="30", **env))
        assert out.returncode == 0, out.stderr
        assert end_state(root, srv, serial) == "provisioned"
        assert_no_wasted_identity(srv, {serial: root})
        assert status(root)["attempt"] == attempts
        assert len(identity_requests(srv, serial)) == requests_seen
        assert 409 not in identity_statuses(srv)
        if "fail_injection_next" in knobs:
            assert "restarting FCC (1/2)" in out.stderr
        assert fcc_process(journal(root)) is None
    finally:
        srv.stop()


def test_answer_lost_after_injection(tmp_path: Path, server: SimServer) -> None:
    """The network drops mid-response: the server injected FCC and keeps the record."""
    server.set_faults(drop_after_next=1)
    root, serial = tmp_path / "gw", "GW-LOST-ANSWER"
    out = provision(root, server.url, serial, fcc_command(),
                    env=agent_env(PEP_SERVER_DEADLINE="30"))
    assert out.returncode == 0, out.stderr
    assert end_state(root, server, serial) == "provisioned"  # enrollment id = server's record
    assert_no_wasted_identity(server, {serial: root})
    assert journal(root).get("rebuilt_answer") is True
    assert identity_statuses(server).count(409) == 0, (
        "the agent asked again after the server had provisioned the serial: "
        f"{len(identity_requests(server, serial))} identity requests\n{out.stderr}")
    assert len(identity_requests(server, serial)) == 1


@pytest.mark.parametrize("all_late", [False, True], ids=["first-answer-late", "every-answer-late"])
def test_answer_slower_than_the_http_timeout(tmp_path: Path, server: SimServer,
                                             all_late: bool) -> None:
    """The server takes longer than PEP_HTTP_TIMEOUT before it even starts the injection."""
    server.set_faults(delay=5)
    root, serial = tmp_path / "gw", f"GW-SLOW-{int(all_late)}"
    env = agent_env(PEP_HTTP_TIMEOUT="2", PEP_SERVER_DEADLINE="60", PEP_RETRY_BASE="0.2",
                    PEP_RETRY_CAP="1")
    agent = start_agent(provision_argv(root, server.url, serial, fcc_command()),
                        tmp_path / "agent", env)
    try:
        if not all_late:
            wait_until("the first identity request reaches the server",
                       lambda: len(identity_requests(server, serial)) >= 1, 60,
                       alive=agent)
            server.set_faults(delay=0)
        assert agent.wait(90) == 0, agent.err()
        assert end_state(root, server, serial) == "provisioned"
        assert_no_wasted_identity(server, {serial: root})
        doc = status(root)
        assert doc["attempt"] >= 2, "the first request timed out, so there was a retry"
        if not all_late:
            # The retry was answered; the late first request finds the record: 409, unseen.
            assert journal(root).get("rebuilt_answer") is not True
    finally:
        agent.kill()


def test_409_is_final_and_never_retried(tmp_path: Path, server: SimServer) -> None:
    """The serial has a record already (another gateway took it): exit 15, one request."""
    serial = "GW-TAKEN"
    other = start_fcc(tmp_path / "other-gateway")
    try:
        first = server.get("/v3/identity", serialNumber=serial, ip=other.ip, port=other.port)
        assert first.status_code == 200
    finally:
        other.stop()
    record = server.get("/v3/enrollment-id", serialNumber=serial).text
    root = tmp_path / "gw"
    out = provision(root, server.url, serial, fcc_command(),
                    env=agent_env(PEP_SERVER_DEADLINE="60"))
    assert out.returncode == 15, out.stderr
    assert f"serial {serial} is a duplicate" in out.stderr
    assert end_state(root, server, serial) == "not-provisioned"
    assert_no_wasted_identity(server, {serial: root}, foreign={serial})
    assert status(root)["error"]["code"] == 15
    assert len(identity_requests(server, serial)) == 2  # the other gateway's, then ours only
    assert server.get("/v3/enrollment-id", serialNumber=serial).text == record
    assert fcc_process(journal(root)) is None


def test_injection_failing_more_often_than_allowed(tmp_path: Path) -> None:
    srv = start_server(tmp_path / "server", fail_injection_next=3)
    try:
        root, serial = tmp_path / "gw", "GW-NO-INJECTION"
        out = provision(root, srv.url, serial, fcc_command(),
                        env=agent_env(PEP_INJECTION_RETRIES="2", PEP_SERVER_DEADLINE="60"))
        assert out.returncode == 16, out.stderr
        assert "could not inject FCC" in out.stderr
        assert end_state(root, srv, serial) == "not-provisioned"
        assert_no_wasted_identity(srv, {serial: root})
        assert len(identity_requests(srv, serial)) == 3  # the first try and two restarts
        assert srv.get("/v3/enrollment-id", serialNumber=serial).status_code == 404
        assert fcc_process(journal(root)) is None
    finally:
        srv.stop()


def _sigterm_ignored(pid: int) -> bool:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigIgn:"):
            return bool(int(line.split()[1], 16) >> (signal.SIGTERM - 1) & 1)
    return False


def test_fcc_ignoring_sigterm_while_the_agent_waits_for_it(tmp_path: Path,
                                                           server: SimServer) -> None:
    """FCC takes the credentials, never exits and ignores SIGTERM: killed, then resumed."""
    # SIG_IGN survives exec, so the stand-in starts with SIGTERM ignored.
    deaf = shlex.join(["sh", "-c", "trap '' TERM; exec " + shlex.join(fcc_argv(
        fault="hang-after"))])
    root, serial = tmp_path / "gw", "GW-DEAF-FCC"
    agent: Background = start_agent(provision_argv(root, server.url, serial, deaf),
                                    tmp_path / "agent", agent_env(PEP_FCC_EXIT_TIMEOUT="3"))
    fcc = None
    try:
        wait_until("the agent waits for FCC", lambda: journal(root).get("step") == "wait-fcc",
                   60, alive=agent)
        fcc = fcc_process(journal(root))
        assert fcc is not None and _sigterm_ignored(fcc.pid)
        assert agent.wait(60) == 13, agent.err()
        assert fcc_process(journal(root)) is None, "FCC survived SIGTERM: no SIGKILL followed"
        assert end_state(root, server, serial) == "not-provisioned"
        assert_no_wasted_identity(server, {serial: root})
        # The server's answer was saved before FCC hung: a rerun installs it without asking.
        assert (root / STATE_DIR / "response.json").exists()
        rerun = provision(root, server.url, serial, fcc_command())
        assert rerun.returncode == 0, rerun.stderr
        assert end_state(root, server, serial) == "provisioned"
        assert_no_wasted_identity(server, {serial: root})
        assert len(identity_requests(server, serial)) == 1
    finally:
        agent.kill()
        end_leftover(fcc)
