"""Crash safety: the agent is SIGKILLed at every step boundary, then run again.

Whatever happens, a gateway must end in one of two states: provisioned, with a
complete identity from one run, or not provisioned, with nothing half-installed; the judge
of that end state is tests/endstate.py, shared with the other fault-injection modules.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from pep_agent import flow
from tests.agentprocs import agent_env, provision, status
from tests.endstate import (
    STATE_DIR,
    assert_no_wasted_identity,
    end_leftover,
    end_state,
    fcc_process,
    identity_requests,
    journal,
    provision_argv,
    seed_old_identity,
    start_agent,
    wait_until,
)
from tests.simprocs import (
    SimServer,
    fcc_command,
    start_server,
)

# --- the matrix -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimServer]:
    srv = start_server(tmp_path_factory.mktemp("server"))
    yield srv
    srv.stop()


BOUNDARIES = [(step, when) for step in flow.STEP_NAMES for when in ("before", "after")]
# The first boundary at which the server has already answered the identity request.
ANSWERED = BOUNDARIES.index(("request-identity", "after"))
DONE = BOUNDARIES.index(("mark-provisioned", "after"))
# Boundaries where FCC runs, waiting for the server, when the agent dies.
FCC_WAITING = {("start-fcc", "after"), ("request-identity", "before")}


@pytest.mark.parametrize(("step", "when"), BOUNDARIES, ids=[f"{s}:{w}" for s, w in BOUNDARIES])
def test_crash_at_step_boundary_then_rerun(tmp_path: Path, server: SimServer, step: str,
                                           when: str) -> None:
    root = tmp_path / "gw"
    serial = f"GW-CRASH {step} {when}"
    seed_old_identity(root)
    crashed = provision(root, server.url, serial, fcc_command(), crash_at=f"{step}:{when}")
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    at = BOUNDARIES.index((step, when))
    assert status(root)["state"] == ("provisioned" if at >= DONE else "interrupted")
    assert len(identity_requests(server, serial)) == (1 if at >= ANSWERED else 0)
    after_crash = journal(root)
    leftover = fcc_process(after_crash)
    try:
        if (step, when) in FCC_WAITING:
            assert leftover is not None, "FCC should still be waiting after the crash"
        rerun = provision(root, server.url, serial, fcc_command())
        assert rerun.returncode == 0, rerun.stderr
        assert end_state(root, server, serial) == "provisioned"
        assert_no_wasted_identity(server, {serial: root})
        # Exactly one identity request: never a second one once the server had answered.
        assert len(identity_requests(server, serial)) == 1
        assert fcc_process(after_crash) is None, "the crashed run's FCC still runs"
        assert fcc_process(journal(root)) is None
    finally:
        end_leftover(leftover)


@pytest.mark.parametrize("released", [True, False], ids=["fcc-finishes", "fcc-stays-paused"])
def test_kill_while_fcc_is_paused_after_the_exchange(tmp_path: Path, server: SimServer,
                                                     released: bool) -> None:
    """The server answered and FCC holds the credentials but has not exited: power cut."""
    root = tmp_path / "gw"
    serial = f"GW-PAUSED-{released}"
    release = tmp_path / "release-fcc"
    env = agent_env(PEP_SIM_FCC_RELEASE=str(release), PEP_FCC_EXIT_TIMEOUT="60")
    agent = start_agent(provision_argv(root, server.url, serial,
                                       fcc_command(fault="pause-after-exchange")),
                        tmp_path / "run1", env)
    fcc = None
    try:
        wait_until("the agent waits for FCC after the server's answer",
                   lambda: journal(root).get("step") == "wait-fcc", 60, alive=agent)
        assert (root / STATE_DIR / "response.json").exists()
        before_kill = journal(root)
        fcc = fcc_process(before_kill)
        assert fcc is not None
        agent.kill()
        assert fcc.is_running(), "FCC must outlive the agent for this test to mean anything"
        if released:
            release.touch()
        # Not released, FCC never exits by itself: the rerun must stop it and carry on.
        rerun = provision(root, server.url, serial, fcc_command(),
                          env=agent_env(PEP_FCC_EXIT_TIMEOUT="2"))
        assert rerun.returncode == 0, rerun.stderr
        assert end_state(root, server, serial) == "provisioned"
        assert_no_wasted_identity(server, {serial: root})
        assert len(identity_requests(server, serial)) == 1
        assert fcc_process(before_kill) is None, "the paused FCC was left running"
    finally:
        agent.kill()
        end_leftover(fcc)
