import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from pep_agent import report
from pep_agent.errors import StateError
from pep_agent.exit_codes import TABLE, Exit
from pep_agent.settings.paths import Paths
from tests.agentprocs import free_port
from tests.loopback import Handler, LoopbackServer, replying


def _edge_core(h: Handler) -> None:
    h.answer(200, json.dumps({"status": "connected", "endpoint-name": "SN-1",
                              "account-id": "acc", "internal-id": "id"}).encode())


@pytest.fixture
def edge_core_url(loopback: Callable[..., LoopbackServer]) -> str:
    return f"{loopback(replying(_edge_core)).url}/status"


def test_edge_core_connection(edge_core_url: str) -> None:
    assert report.edge_core(edge_core_url) == {"status": "connected", "endpoint-name": "SN-1"}
    down = report.edge_core(f"http://127.0.0.1:{free_port()}/status")
    assert down["status"] == "unreachable" and "not answering" in down["detail"]


def test_document_of_a_failed_run(tmp_path: Path) -> None:
    paths = Paths(tmp_path)
    paths.state_dir.mkdir(parents=True)
    paths.journal.write_text(json.dumps({
        "state": "failed", "step": "request-identity", "serial": "SN-1", "attempt": 4,
        "error": {"code": 14, "name": "SERVER_UNREACHABLE", "message": "cannot reach x",
                  "hint": "check the URL"},
        "steps": {"preflight": {"status": "done", "duration_s": 0.01},
                  "request-identity": {"status": "failed", "duration_s": 2.0}}}))
    doc = report.status_document(paths)
    assert doc["state"] == "failed" and report.exit_code(doc["state"]) == 30
    assert doc["timings"]["agent_s"] == 0.01 and doc["edge_core"] is None
    text = report.human(doc)
    assert "cannot reach x (exit 14)" in text and "hint:          check the URL" in text


def test_a_journal_of_an_earlier_version_names_its_steps_as_today(tmp_path: Path) -> None:
    paths = Paths(tmp_path)
    paths.state_dir.mkdir(parents=True)
    paths.journal.write_text(json.dumps({
        "state": "failed", "step": "unmask-edge-core",
        "steps": {"install": {"status": "done"}, "unmask-edge-core": {"status": "failed"}}}))
    doc = report.status_document(paths)
    assert doc["step"] == "release-edge-core"
    assert doc["steps"] == {"install": {"status": "done"},
                            "release-edge-core": {"status": "failed"}}


def test_states_map_to_codes_no_error_uses(tmp_path: Path) -> None:
    assert report.status_document(Paths(tmp_path))["state"] == "not-started"
    states = ("provisioned", "verified", "failed", "interrupted", "running", "not-started",
              "retrying")
    codes = [report.exit_code(s) for s in states]
    assert codes == [0, 0, 30, 30, 31, 32, 33]
    # Not 1 (a bug) nor 2 (a typo in a polling script), nor any error's code.
    assert not {1, 2} & set(codes)
    assert all(TABLE[c].restarted is None for c in codes if c)


def _gateway_paths(tmp_path: Path) -> Paths:
    """Paths of a real gateway (root /, not a sandbox) whose state directory is tmp_path."""
    return Paths(Path("/"), state_setting=str(tmp_path / "state"))


def _failed(paths: Paths, code: int, finished_at: float) -> None:
    paths.state_dir.mkdir(parents=True, exist_ok=True)
    paths.journal.write_text(json.dumps({
        "state": "failed", "finished_at": finished_at, "updated_at": finished_at,
        "error": {"code": code, "name": Exit(code).name, "message": "m", "hint": "h"}}))


@pytest.mark.parametrize(("code", "age", "expected"), [
    (14, 5.0, "retrying"),  # server unreachable: the unit restarts it in 30 s
    (14, -3600.0, "retrying"),  # the clock was set back since (no RTC, then NTP)
    (14, report.RESTART_WINDOW_S + 1, "failed"),  # nothing restarted it: a failure
    (16, 5.0, "retrying"),
    (3, 5.0, "failed"),  # configuration: RestartPreventExitStatus
    (15, 5.0, "failed"),
    (22, 5.0, "failed"),
])
def test_a_failure_the_unit_restarts_reads_as_retrying(
        tmp_path: Path, code: int, age: float, expected: str) -> None:
    paths = _gateway_paths(tmp_path)
    assert not paths.sandboxed
    now = 1_800_000_000.0
    _failed(paths, code, now - age)
    doc = report.status_document(paths, now=now)
    assert doc["state"] == expected
    assert report.exit_code(doc["state"]) == (33 if expected == "retrying" else 30)
    assert doc["error"]["code"] == code


def test_nothing_restarts_a_sandbox_run(tmp_path: Path) -> None:
    paths = Paths(tmp_path)
    now = 1_800_000_000.0
    _failed(paths, 14, now - 1)
    assert report.status_document(paths, now=now)["state"] == "failed"


def test_an_unreadable_state_is_a_state_error_not_a_traceback(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root reads every file: the test needs an ordinary user")
    paths = _gateway_paths(tmp_path)
    _failed(paths, 14, 0.0)
    paths.state_dir.chmod(0)
    try:
        with pytest.raises(StateError, match="permission denied") as err:
            report.status_document(paths)
    finally:
        paths.state_dir.chmod(0o700)
    assert err.value.code == Exit.STATE and "root" in err.value.hint


def test_a_reused_pid_does_not_look_like_a_running_agent(tmp_path: Path) -> None:
    import os

    from pep_agent.system.proc import process_start_time

    paths = Paths(tmp_path)
    paths.state_dir.mkdir(parents=True)
    me, started = os.getpid(), process_start_time(os.getpid())
    assert started is not None
    for pid_start, expected in ((started, "running"), (started - 1, "interrupted")):
        paths.journal.write_text(json.dumps({"state": "running", "pid": me,
                                             "pid_start": pid_start}))
        assert report.status_document(paths)["state"] == expected
