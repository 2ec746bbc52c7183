"""The exit-code contract: one table, the README generated from it, the unit agreeing with it,
and the CLI's endings (status codes, signals, recorded configuration errors, bugs)."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pep_agent.errors import AbortedError, ConfigError, InstallError, PepError
from pep_agent.exit_codes import TABLE, Exit, markdown_table
from pep_agent.system.led_signals import STATES, failure_state
from tests.agentprocs import AGENT, agent_env, run_agent

REPO = Path(__file__).resolve().parents[2]


def _exit_codes_script() -> object:
    spec = importlib.util.spec_from_file_location("readme_tables", REPO / ".ci/readme-tables.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(not (REPO / "README.md").is_file(),
                    reason="an installed copy (the ptest): the README is in the source tree only")
def test_the_readme_table_is_the_generated_one() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    script = _exit_codes_script()
    stale = "README.md is stale: run `make exit-codes`"
    assert script.spliced(readme, "exit-codes") == readme, stale  # type: ignore[attr-defined]
    # One table only: no second list of codes elsewhere in the README.
    assert readme.count("| code | meaning") == 1


def test_every_code_has_a_row_and_a_row_per_code() -> None:
    assert set(TABLE) == set(Exit)
    rows = [ln for ln in markdown_table().splitlines() if re.match(r"\| \d+ \|", ln)]
    assert [int(r.split("|")[1]) for r in rows] == [int(c) for c in TABLE]


def test_blink_codes_are_distinct_and_every_failure_state_exists() -> None:
    blinks = [row.blinks for row in TABLE.values() if row.blinks is not None]
    assert len(blinks) == len(set(blinks))
    assert all(failure_state(code) in STATES for code in Exit)
    assert failure_state(Exit.STATE) == "failed-state" and failure_state(Exit.CONFIG) == "failed"


def _unit_setting(name: str) -> set[int]:
    text = (REPO / "systemd/pep-agent.service").read_text(encoding="utf-8")
    (line,) = re.findall(rf"^{name}=(.*)$", text, flags=re.MULTILINE)
    return {int(x) for x in line.split()}


def test_the_restarted_column_is_what_the_unit_does() -> None:
    prevented = _unit_setting("RestartPreventExitStatus")
    success = _unit_setting("SuccessExitStatus") | {0}
    not_restarted = {int(c) for c, row in TABLE.items() if row.restarted is False}
    assert not_restarted == prevented | success
    # RestartSec bounds how long a failure reads as "retrying".
    from pep_agent.report import RESTART_WINDOW_S

    text = (REPO / "systemd/pep-agent.service").read_text(encoding="utf-8")
    (restart_sec,) = re.findall(r"^RestartSec=(\d+)s$", text, flags=re.MULTILINE)
    assert int(restart_sec) + 60 <= RESTART_WINDOW_S


def test_as_dict_is_the_journal_form() -> None:
    err = InstallError("disk full", hint="free space")
    assert err.as_dict() == {"code": 18, "name": "INSTALL", "message": "disk full",
                             "hint": "free space"}
    assert ConfigError("x").hint == TABLE[Exit.CONFIG].hint
    aborted = AbortedError.by_signal(signal.SIGTERM)
    assert int(Exit.SIGTERM) == 128 + signal.SIGTERM and int(Exit.SIGINT) == 128 + signal.SIGINT
    assert aborted.as_dict()["code"] == 143 and aborted.signal == "SIGTERM"
    assert aborted.as_dict()["message"] == "aborted by SIGTERM"


def test_an_abort_passes_every_retry_loop() -> None:
    """No `except PepError` / `except Exception` (a retry, a fallback) may swallow a signal."""
    caught = []
    with pytest.raises(AbortedError):
        try:
            raise AbortedError.by_signal(signal.SIGINT)
        except (PepError, Exception) as e:  # what a retry loop catches
            caught.append(e)
    assert caught == []


# --- the CLI's endings, as a process -------------------------------------------------------------

@pytest.mark.spawns
def test_a_typo_in_a_status_poll_is_not_a_status(tmp_path: Path) -> None:
    typo = run_agent("status", "--root", str(tmp_path), "--wiat")
    assert typo.returncode == 2
    plain = run_agent("status", "--root", str(tmp_path))
    assert plain.returncode == int(Exit.STATUS_NOT_STARTED), plain.stderr
    assert plain.stdout.startswith("state:         not-started")


@pytest.mark.spawns
def test_a_configuration_error_is_a_recorded_failure(tmp_path: Path) -> None:
    root = tmp_path / "gw"
    (root / "userdata").mkdir(parents=True)
    out = run_agent("provision", "--root", str(root), "--server", "ftp://nowhere",
                    "--serial", "GW-1", "--no-reboot")
    assert out.returncode == 3, out.stderr
    state_dir = root / "userdata/pep-agent"
    assert sorted(p.name for p in state_dir.iterdir()) == ["lock", "state.json"]
    started = time.monotonic()
    status = run_agent("status", "--root", str(root), "--json", "--wait", "--timeout", "60")
    assert time.monotonic() - started < 30  # not the whole timeout
    assert status.returncode == int(Exit.STATUS_FAILED), status.stderr
    doc = json.loads(status.stdout)
    assert doc["state"] == "failed" and doc["error"]["code"] == 3
    assert "ftp://nowhere" in doc["error"]["message"] and doc["error"]["hint"]


@pytest.mark.spawns
def test_a_configuration_error_keeps_the_rest_of_the_journal(tmp_path: Path) -> None:
    root = tmp_path / "gw"
    journal = root / "userdata/pep-agent/state.json"
    journal.parent.mkdir(parents=True)
    earlier = {"schema": 1, "state": "failed", "serial": "GW-1", "run_id": "abc",
               "injection": {"serialNumber": "GW-1"}, "steps": {}}
    journal.write_text(json.dumps(earlier))
    out = run_agent("provision", "--root", str(root), "--server", "ftp://nowhere")
    assert out.returncode == 3
    after = json.loads(journal.read_text())
    assert {k: after[k] for k in earlier if k != "state"} == {
        k: v for k, v in earlier.items() if k != "state"}
    assert after["error"]["code"] == 3


@pytest.mark.spawns
def test_a_configuration_error_on_a_provisioned_gateway_changes_nothing(tmp_path: Path) -> None:
    root = tmp_path / "gw"
    state_dir = root / "userdata/pep-agent"
    state_dir.mkdir(parents=True)
    (state_dir / "provisioned").write_text("GW-1\n")
    out = run_agent("provision", "--root", str(root), "--server", "ftp://nowhere")
    assert out.returncode == 3
    assert [p.name for p in state_dir.iterdir()] == ["provisioned"]


@pytest.mark.spawns
def test_a_bad_root_just_exits_3(tmp_path: Path) -> None:
    out = run_agent("provision", "--root", str(tmp_path / "missing"), "--server", "ftp://x")
    assert out.returncode == 3
    assert not (tmp_path / "missing").exists()


@pytest.mark.spawns
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_ends_a_run_with_128_plus_its_number(tmp_path: Path, sig: int) -> None:
    """FCC that never prints its port keeps the run waiting; the signal ends it."""
    root = tmp_path / "gw"
    fcc = tmp_path / "fcc.sh"
    fcc.write_text("#!/bin/sh\nexec sleep 30\n")
    fcc.chmod(0o755)
    env = agent_env(PEP_FCC_START_TIMEOUT="30")
    agent = subprocess.Popen(
        [*AGENT, "provision", "--root", str(root), "--server", "http://127.0.0.1:9",
         "--serial", "GW-SIG", "--interface", "lo", "--fcc-command", str(fcc), "--no-reboot"],
        env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    journal = root / "userdata/pep-agent/state.json"
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if journal.exists() and json.loads(journal.read_text()).get("step") == "start-fcc":
                break
            time.sleep(0.05)
        else:
            pytest.fail("the run never reached start-fcc")
        agent.send_signal(sig)
        _, err = agent.communicate(timeout=30)
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait()
    assert agent.returncode == 128 + sig, err
    name = signal.Signals(sig).name
    assert f"aborted by {name}" in err and "Traceback" not in err
    # The runner records it: `status` says which signal ended the run.
    recorded = json.loads(journal.read_text())
    assert recorded["state"] == "failed"
    assert recorded["error"]["code"] == 128 + sig
    assert recorded["error"]["message"] == f"aborted by {name}"


def _status_as(uid: int, state_dir: Path) -> tuple[int, str]:
    """`pep-agent status` in a forked child that dropped to `uid`: no exec, so an interpreter
    the other user could not load (its libpython under root's home) still runs."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 70
        try:
            os.close(read_end)
            os.dup2(write_end, 2)
            sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115 (fd 2 outlives it)
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            os.environ["PEP_STATE_DIR"] = str(state_dir)
            from pep_agent.cli import main

            sys.argv = ["pep-agent", "status"]
            main()
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 70
        finally:
            sys.stderr.flush()
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end) as err:
        text = err.read()
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), text


@pytest.mark.spawns
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to become another user")
def test_status_as_non_root_on_a_root_owned_gateway(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    state_dir.mkdir(mode=0o700)
    (state_dir / "state.json").write_text('{"state": "failed"}')
    code, err = _status_as(65534, state_dir)
    assert code == int(Exit.STATE), err
    assert "Traceback" not in err
    assert err.splitlines() == [
        "pep-agent: error: cannot read the provisioning state: permission denied",
        "pep-agent: hint: run it as root (sudo pep-agent status)"]


def test_a_bug_is_loud_and_its_secrets_are_not(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """An unexpected exception: traceback at ERROR through the redacting filter (no --debug),
    then exit 1 with a hint; the document in the exception's text is masked."""
    import logging

    import typer

    from pep_agent.cli.app import handles_errors

    for name in ("JOURNAL_STREAM", "INVOCATION_ID"):
        monkeypatch.delenv(name, raising=False)
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    for h in handlers:
        root.removeHandler(h)
    pem = "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIBsecretbody\n-----END EC PRIVATE KEY-----"

    @handles_errors
    def provision() -> None:
        raise KeyError({"enrollmentID": "A-35:E7:secret", "key": pem})

    @handles_errors
    def runner_bug() -> None:
        """A runner that turns a bug into an internal PepError, as the flow's steps do."""
        try:
            raise KeyError({"enrollmentID": "A-35:E7:secret"})
        except KeyError as e:
            raise PepError(f"internal error in step install: {type(e).__name__}",
                           hint="report it") from None

    try:
        with pytest.raises(typer.Exit) as ended:
            provision()
        with pytest.raises(typer.Exit) as converted:
            runner_bug()
    finally:
        for h in list(root.handlers):
            root.removeHandler(h)
        for h in handlers:
            root.addHandler(h)
        root.setLevel(level)
    assert ended.value.exit_code == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err
    assert "A-35:E7:secret" not in err and "MHcCAQEEIBsecretbody" not in err
    first, _, second = err.partition(f"pep-agent: hint: {TABLE[Exit.INTERNAL].hint}\n")
    assert first.startswith("pep-agent: error: internal error in provision: KeyError\n")
    # The converted bug: the runner that converted it logged its traceback (once); the CLI
    # only maps the error to its line, hint and code.
    assert converted.value.exit_code == 1
    assert second == ("pep-agent: error: internal error in step install: KeyError\n"
                      "pep-agent: hint: report it\n")


@pytest.mark.spawns
def test_status_wait_keeps_waiting_while_the_unit_retries(tmp_path: Path) -> None:
    """A gateway (root /) whose last run failed with 14 a moment ago: `status --wait` waits
    through "retrying" until the restarted run has provisioned the gateway."""
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    journal = state_dir / "state.json"
    journal.write_text(json.dumps({
        "state": "failed", "finished_at": time.time(), "serial": "GW-R",
        "error": {"code": 14, "name": "SERVER_UNREACHABLE", "message": "m", "hint": "h"}}))
    env = agent_env(PEP_STATE_DIR=str(state_dir))
    once = run_agent("status", "--json", env=env)
    assert once.returncode == int(Exit.STATUS_RETRYING), once.stderr
    assert json.loads(once.stdout)["state"] == "retrying"
    waiting = subprocess.Popen([*AGENT, "status", "--wait", "--timeout", "30"], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               stdin=subprocess.DEVNULL)
    try:
        time.sleep(1.0)
        assert waiting.poll() is None, "status --wait returned while the unit retries"
        (state_dir / "provisioned").write_text("GW-R\n")  # the restarted run finished
        journal.write_text(json.dumps({"state": "provisioned", "serial": "GW-R"}))
        out, err = waiting.communicate(timeout=20)
    finally:
        if waiting.poll() is None:
            waiting.kill()
            waiting.wait()
    assert waiting.returncode == 0, err
    assert out.startswith("state:         provisioned")


@pytest.mark.spawns
@pytest.mark.parametrize("present", ["nothing", "var/lib/pep-agent"])  # but /userdata
def test_a_configuration_error_on_a_fresh_gateway_is_recorded(tmp_path: Path,
                                                              present: str) -> None:
    """No state folder yet, or only the one the unit's StateDirectory= creates: status still
    learns of the failure instead of saying not-started."""
    root = tmp_path / "gw"
    (root / "userdata").mkdir(parents=True)  # the identity's partition
    if present != "nothing":
        (root / present).mkdir(parents=True)
    out = run_agent("provision", "--root", str(root), "--server", "ftp://nowhere",
                    "--serial", "GW-1", "--no-reboot")
    assert out.returncode == 3, out.stderr
    status = run_agent("status", "--root", str(root), "--json")
    assert status.returncode == int(Exit.STATUS_FAILED), status.stdout + status.stderr
    doc = json.loads(status.stdout)
    assert doc["state"] == "failed" and doc["error"]["code"] == 3
