"""What a technician reads on real processes: a closed output pipe, misspelled settings, a wrong
server path, and hints that name the right source and the right cause."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from pep_agent.exit_codes import Exit
from tests.agentprocs import AGENT, agent_env, provision, run_agent
from tests.endstate import STATE_DIR, assert_no_wasted_identity
from tests.simprocs import SimServer, fcc_command, start_server


@pytest.fixture
def server(tmp_path: Path) -> Iterator[SimServer]:
    srv = start_server(tmp_path / "server")
    yield srv
    srv.stop()


@pytest.mark.parametrize("more", [(), ("--json",)])
def test_status_into_a_closed_pipe_ends_quietly(tmp_path: Path, more: tuple[str, ...]) -> None:
    """`pep-agent status | head -1`: the reader is gone before the output is written. A Unix
    filter ends quietly, as SIGPIPE ends it: 128 + 13, nothing on stderr."""
    read, write = os.pipe()
    os.close(read)  # the reader went away: every write fails with EPIPE
    try:
        out = subprocess.run([*AGENT, "status", "--root", str(tmp_path), *more], stdout=write,
                             stderr=subprocess.PIPE, text=True, env=agent_env(), timeout=60,
                             stdin=subprocess.DEVNULL, check=False)
    finally:
        os.close(write)
    assert out.stderr == ""
    assert out.returncode == 141



def test_a_misspelled_setting_in_the_env_file_stops_the_run(tmp_path: Path) -> None:
    """PEP_SERVR_URL used to send the run to the default server: exit 14, and restarts."""
    root = tmp_path / "gw"
    env_file = root / "etc/default/pep-agent"
    env_file.parent.mkdir(parents=True)
    env_file.write_text("PEP_SERVR_URL=http://127.0.0.1:9\n")
    out = run_agent("provision", "--root", str(root), "--serial", "GW-TYPO", "--interface", "lo",
                    "--no-reboot")
    assert out.returncode == 3, out.stderr
    assert (f"{env_file} line 1: unknown setting PEP_SERVR_URL (did you mean "
            "PEP_SERVER_URL?)") in out.stderr


def test_a_misspelled_setting_in_the_environment_is_named(tmp_path: Path,
                                                          server: SimServer) -> None:
    out = run_agent("get-enrollment-id", "--server", server.url, "-s", "GW-NONE",
                    env=agent_env(PEP_INTERFCE="lo"))
    assert out.returncode == 24, out.stderr
    assert ("pep-agent: warning: environment: unknown setting PEP_INTERFCE (did you mean "
            "PEP_INTERFACE?); it is ignored") in out.stderr


def test_a_wrong_server_path_is_named_as_a_wrong_url(tmp_path: Path, server: SimServer) -> None:
    """The pep server's identity route answers 404 only with an empty body: a 404 page there
    is a wrong URL, not a serial the server does not know."""
    root, serial = tmp_path / "gw", "GW-PATH"
    out = provision(root, f"{server.url}/pep", serial, fcc_command())
    assert out.returncode == int(Exit.SERVER_ERROR), out.stderr
    assert "no deployed gateway" not in out.stderr
    assert f"{server.url}/pep/v3/identity answered 404" in out.stderr
    assert "hint: check the server URL (--server / PEP_SERVER_URL)" in out.stderr
    assert not (root / STATE_DIR / "provisioned").exists()
    assert assert_no_wasted_identity(server, {serial: root}) == {serial: "unprovisioned"}


def test_a_blank_serial_option_is_named_as_the_option(server: SimServer) -> None:
    out = run_agent("get-enrollment-id", "--server", server.url, "-s", "  ")
    assert out.returncode == int(Exit.SERIAL), out.stderr
    assert "error: the serial number from --serial is empty" in out.stderr
    assert "configuration" not in out.stderr and "PEP_SERIAL_COMMAND" not in out.stderr


def test_a_bad_server_option_is_named_as_the_option(tmp_path: Path) -> None:
    out = run_agent("get-enrollment-id", "--server", "ftp://10.0.0.9", "-s", "GW-1")
    assert out.returncode == int(Exit.CONFIG), out.stderr
    assert "invalid server URL (--server) 'ftp://10.0.0.9'" in out.stderr
    assert "PEP_SERVER_URL" not in out.stderr


def test_a_megabyte_serial_is_told_the_serial_rule(tmp_path: Path) -> None:
    root = tmp_path / "gw"
    env_file = root / "etc/default/pep-agent"
    env_file.parent.mkdir(parents=True)
    env_file.write_text("PEP_SERIAL=" + "S" * 1_000_000 + "\n")
    out = run_agent("provision", "--root", str(root), "--interface", "lo", "--no-reboot")
    assert out.returncode == int(Exit.SERIAL), out.stderr[:2000]
    assert (f"error: the serial number from PEP_SERIAL in {env_file} line 1 has 1000000 "
            "characters (at most 64)") in out.stderr
    assert "shorten" not in out.stderr and "bytes" not in out.stderr.split("hint:")[0]


def test_a_server_that_dies_mid_injection_is_not_said_to_have_failed_it(tmp_path: Path) -> None:
    """The server is killed after FCC stored the credentials, before it finished its record,
    and comes back on the same records: the connection broke, which says nothing about the
    injection; the hint must not blame FCC, and nothing FCC stored is wasted."""
    root, serial = tmp_path / "gw", "GW-DIES"
    first = start_server(tmp_path / "server", deploy_delay=600)
    port = int(first.url.rsplit(":", 1)[1])
    # The HTTP timeout is how long the agent watches an unfinished record (as long as an
    # injection may take) before it names it: 10 s lets a busy machine inject, and the watch
    # still ends in one look or two.
    env = agent_env(PEP_SERVER_DEADLINE="30", PEP_INJECTION_RETRIES="1", PEP_HTTP_TIMEOUT="10")
    agent = subprocess.Popen(
        [*AGENT, "provision", "--root", str(root), "--server", first.url, "--serial", serial,
         "--interface", "lo", "--fcc-command", fcc_command(), "--no-reboot"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        stdin=subprocess.DEVNULL)
    second = None
    try:
        assert first.output.wait_for("holding the record undeployed", timeout=60), \
            first.output.text()
        first.process.kill()  # no clean-up of the record, as a power cut of the server
        first.stop()
        second = start_server(tmp_path / "server", port=port)
        _, stderr = agent.communicate(timeout=120)
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.communicate()
    assert second is not None
    try:
        said = stderr.lower()
        assert "could not inject" not in said, stderr
        assert "check that fcc runs" not in said, stderr
        # What is known: the connection broke; the credentials are kept while the server is
        # asked whether it holds the record.
        assert "remote end closed connection" in said, stderr
        assert "fcc's credentials are kept while the server is asked" in said, stderr
        assert_no_wasted_identity(second, {serial: root})
    finally:
        second.stop()
