"""Children never inherit the variables systemd meant for the agent's own process."""

from __future__ import annotations

import sys

import pytest

from pep_agent.system import proc

PRINT_ENV = [sys.executable, "-c", "import os, json; print(json.dumps(dict(os.environ)))"]


@pytest.fixture
def under_systemd(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", "/run/systemd/notify")
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    monkeypatch.setenv("WATCHDOG_PID", "1234")
    monkeypatch.setenv("PEP_ENV_PROBE", "kept")


def _env_of(output: str) -> dict[str, str]:
    import json

    return dict(json.loads(output))


@pytest.mark.spawns
def test_run_drops_notify_socket_and_keeps_the_rest(under_systemd: None) -> None:
    env = _env_of(proc.run(PRINT_ENV, timeout=30).stdout)
    assert env["PEP_ENV_PROBE"] == "kept"
    assert not proc.MAIN_PROCESS_ONLY & env.keys(), env


@pytest.mark.spawns
def test_spawn_drops_it_from_an_explicit_environment_too(under_systemd: None) -> None:
    import os

    child = proc.spawn(PRINT_ENV, env={**os.environ, "ETHERNET_LINUX_IFACE_NAME": "eth0"})
    out, _ = child.communicate(timeout=30)
    env = _env_of(out.decode())
    assert env["ETHERNET_LINUX_IFACE_NAME"] == "eth0"
    assert env["PEP_ENV_PROBE"] == "kept"
    assert not proc.MAIN_PROCESS_ONLY & env.keys(), env
