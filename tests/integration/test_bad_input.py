"""Bad operator input as real `pep-agent` processes: one line, a documented exit code, and
nothing changed. Also the operator's conveniences: --version, completion, `led` failures, the
serial rule, FCC hints that match what FCC printed, and sealing inside the sandbox.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from pep_agent.system.sealing import SANDBOX_KEY
from tests.agentprocs import agent_env, free_port, provision, run_agent, service_log, status
from tests.simprocs import SimServer, fcc_command

IDENTITY = "userdata/edge_gw_config/identity.json"
ENV_FILE = "etc/default/pep-agent"

# Every command that reads the settings (status reads only the journal; sim reads nothing).
SETTINGS_COMMANDS = [
    ("provision", "--no-reboot"),
    ("reprovision", "--yes", "--no-reboot"),
    ("verify",),
    ("led", "success"),
    ("get-one-identity", "-s", "GW-1", "-i", "127.0.0.1", "-p", "4000"),
    ("get-enrollment-id", "-s", "GW-1"),
    ("get-verification-key", "-s", "GW-1"),
    ("list-enrollment-ids",),
]


def tree(root: Path) -> dict[str, bytes]:
    """Every file under root with its content: "nothing changed" is this, unchanged."""
    return {str(p.relative_to(root)): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}


def assert_one_line_error(out: subprocess.CompletedProcess[str], code: int,
                          needle: str) -> str:
    """The exit code, no traceback, and an error line holding `needle`; returns that line."""
    assert out.returncode == code, (out.returncode, out.stderr)
    assert "Traceback" not in out.stderr and "internal error" not in out.stderr, out.stderr
    errors = [ln for ln in out.stderr.splitlines() if ln.startswith("pep-agent: error: ")]
    assert len(errors) == 1, out.stderr
    assert needle in errors[0], out.stderr
    assert all(ln.startswith("pep-agent: ") for ln in out.stderr.splitlines()), out.stderr
    return errors[0]


@pytest.mark.parametrize(("data", "line", "needle"), [
    (b"PEP_SERIAL=GW-1\nPEP_CATEGORY=d\xe9veloppement\n", 2, "byte 0xe9 is not UTF-8"),
    ("PEP_SERIAL=GW-1\n".encode("utf-16"), 1, "UTF-16"),
])
@pytest.mark.parametrize("command", SETTINGS_COMMANDS, ids=lambda c: c[0])
def test_env_file_not_utf8_is_exit_3_naming_file_and_line(
        tmp_path: Path, command: tuple[str, ...], data: bytes, line: int, needle: str) -> None:
    root = tmp_path / "gw"
    (root / ENV_FILE).parent.mkdir(parents=True)
    (root / ENV_FILE).write_bytes(data)
    before = tree(root)
    out = run_agent(*command, "--root", str(root), env=agent_env(
        PEP_SERVER_URL=f"http://127.0.0.1:{free_port()}"))
    err = assert_one_line_error(out, 3, needle)
    assert f"{root / ENV_FILE} line {line}:" in err
    assert tree(root) == before


@pytest.mark.parametrize("journal", [
    {"state": "failed", "error": "boom"},
    {"state": "running", "steps": [1], "step": "install", "attempt": "2"},
    {"state": "failed", "steps": {"install": "done", "x": {"duration_s": "fast"}},
     "error": {"message": 7, "code": "x"}, "next_retry_in": "soon", "serial": ["GW"]},
    [1, 2],
    "[" * 100_000,
])
@pytest.mark.parametrize("as_json", [False, True])
def test_status_of_a_malformed_journal(tmp_path: Path, journal: object, as_json: bool) -> None:
    path = tmp_path / "userdata/pep-agent/state.json"
    path.parent.mkdir(parents=True)
    path.write_text(journal if isinstance(journal, str) else json.dumps(journal))
    before = tree(tmp_path)
    out = run_agent("status", "--root", str(tmp_path), *(["--json"] if as_json else []))
    assert out.returncode in (30, 32), out.stderr  # failed or interrupted, not started
    assert out.stderr == ""
    if as_json:
        doc = json.loads(out.stdout)
        assert isinstance(doc["steps"], dict) and doc["error"] in (None, {})
    else:
        assert out.stdout.startswith("state:")
    assert tree(tmp_path) == before


@pytest.mark.parametrize(("name", "value"), [
    ("PEP_HTTP_TIMEOUT", "1e300"), ("PEP_FCC_START_TIMEOUT", "1e300"),
    ("PEP_FCC_EXIT_TIMEOUT", "1e300"), ("PEP_SERVER_DEADLINE", "1e300"),
    ("PEP_NETWORK_DEADLINE", "1e300"), ("PEP_RETRY_BASE", "1e300"),
    ("PEP_RETRY_CAP", "1e300"), ("PEP_VERIFY_TIMEOUT", "1e300"),
    ("PEP_INJECTION_RETRIES", "99999999999"),
])
def test_out_of_range_numbers_stop_provision_before_any_change(
        tmp_path: Path, server: SimServer, name: str, value: str) -> None:
    root = tmp_path / "gw"
    root.mkdir()
    out = provision(root, server.url, "GW-RANGE", fcc_command(),
                    env=agent_env(**{name: value}))
    assert_one_line_error(out, 3, f"{name}='{value}' must be")
    assert tree(root) == {} and service_log(root) == []


def test_sim_server_port_out_of_range() -> None:
    out = run_agent("sim", "server", "--port", "99999")
    assert_one_line_error(out, 2, "--port 99999")


def test_version_and_completion() -> None:
    from pep_agent import __version__

    out = run_agent("--version")
    assert (out.returncode, out.stdout) == (0, f"pep-agent {__version__}\n")
    # With shellingham installed (scarthgap ships it), typer 0.9 takes --show-completion as a
    # flag and asks shellingham for the shell, which fails when no shell is among this
    # process's ancestors (a detached CI job): typer's own switch keeps the shell argument.
    script = run_agent("--show-completion", "bash",
                       env=agent_env(SHELL="/bin/bash",
                                     _TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION="1"))
    assert script.returncode == 0 and "_PEP_AGENT_COMPLETE" in script.stdout
    # What bash asks once that script is installed: the words that complete "pro".
    words = run_agent(env=agent_env(_PEP_AGENT_COMPLETE="complete_bash",
                                    COMP_WORDS="pep-agent pro", COMP_CWORD="1"))
    assert words.stdout.split() == ["provision"]


def fake_leds(root: Path, *names: str) -> Path:
    leds = root / "sys/class/leds"
    for name in names:
        (leds / name).mkdir(parents=True)
        for attr in ("trigger", "brightness", "delay_on", "delay_off"):
            (leds / name / attr).write_text("0")
    return leds


@pytest.mark.parametrize(("env", "leds", "needle"), [
    ({"PEP_LED_BACKEND": "sysfs"}, (), "does not exist"),
    ({"PEP_LED_BACKEND": "rgb"}, ("red", "green"), "blue does not exist"),
    ({"PEP_LED_BACKEND": "command", "PEP_LED_COMMAND": "false"}, (), "command failed"),
    ({"PEP_LED_BACKEND": "none"}, (), "no LED is configured"),
])
def test_led_that_cannot_be_driven_is_exit_26(tmp_path: Path, env: dict[str, str],
                                              leds: tuple[str, ...], needle: str) -> None:
    fake_leds(tmp_path, *leds)
    out = run_agent("led", "verified", "--root", str(tmp_path), env=agent_env(**env))
    assert_one_line_error(out, 26, needle)


def test_led_that_is_driven_is_exit_0(tmp_path: Path) -> None:
    leds = fake_leds(tmp_path, "status")
    out = run_agent("led", "verified", "--root", str(tmp_path),
                    env=agent_env(PEP_LED_BACKEND="sysfs"))
    assert (out.returncode, out.stderr) == (0, "")
    assert (leds / "status/trigger").read_text() == "none"


def test_a_serial_with_spaces_around_is_the_same_serial_everywhere(
        tmp_path: Path, server: SimServer) -> None:
    root = tmp_path / "gw"
    out = provision(root, server.url, " GW-LEAD ", fcc_command())
    assert out.returncode == 0, out.stderr
    assert json.loads((root / IDENTITY).read_text())["serialNumber"] == "GW-LEAD"
    enrollment = status(root)["enrollment_id"]
    for given in (" GW-LEAD", "GW-LEAD ", "GW-LEAD"):
        out = run_agent("get-enrollment-id", "-s", given, "--server", server.url,
                        "--root", str(tmp_path / "other"))
        assert (out.returncode, out.stdout.strip()) == (0, enrollment), out.stderr
    out = run_agent("get-enrollment-id", "-s", "  ", "--server", server.url,
                    "--root", str(tmp_path / "other"))
    assert_one_line_error(out, 10, "empty")
    # Provision alone also needs the endpoint-name characters, refused before any change.
    other = tmp_path / "gw2"
    other.mkdir()
    out = provision(other, server.url, " GW#LEAD", fcc_command())
    assert_one_line_error(out, 10, "forbidden")
    assert service_log(other) == []


def test_fcc_hang_after_success_hint_says_what_fcc_printed_and_a_rerun_resumes(
        tmp_path: Path, server: SimServer) -> None:
    root = tmp_path / "gw"
    out = provision(root, server.url, "GW-HANG", fcc_command(fault="hang-after"),
                    env=agent_env(PEP_FCC_EXIT_TIMEOUT="2"))
    assert out.returncode == 13, out.stderr
    hint = next(ln for ln in out.stderr.splitlines() if ln.startswith("pep-agent: hint: "))
    assert "Successfully completed factory flow" in hint and "resumes" in hint
    assert "did not complete" not in out.stderr
    # What the hint promises: the rerun installs without asking the server again.
    again = provision(root, server.url, "GW-HANG", fcc_command())
    assert again.returncode == 0, again.stderr
    assert status(root)["resumed"] is True


def test_sealing_in_the_sandbox_never_runs_the_hosts_journalctl(
        tmp_path: Path, server: SimServer) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    ran = tmp_path / "journalctl-ran"
    fake = bin_dir / "journalctl"
    fake.write_text(f'#!/bin/sh\ntouch "{ran}"\necho 0a0a0a-0b0b0b/1-2\n')
    fake.chmod(0o755)
    env = agent_env(PEP_FSS="true", PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    root = tmp_path / "gw"
    out = provision(root, server.url, "GW-SEAL", fcc_command(), env=env)
    assert out.returncode == 0, out.stderr
    assert not ran.exists()
    assert "journalctl --setup-keys --force --interval=10s" in service_log(root)
    key = run_agent("get-verification-key", "-s", "GW-SEAL", "--server", server.url,
                    "--root", str(tmp_path / "other"))
    assert key.stdout.strip() == SANDBOX_KEY
