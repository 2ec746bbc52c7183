"""Runs `pep-agent` as a real process against a sandbox root, for integration tests."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

AGENT = [sys.executable, "-m", "pep_agent"]
# The same command line with a crash point in its context (tests/crashpoint.py).
CRASHING_AGENT = [sys.executable, "-m", "tests.crashpoint"]
REPO = Path(__file__).resolve().parent.parent

# Short deadlines so that failure tests end quickly; each test may override them. The server
# deadline also cuts a request in progress, so it leaves a successful injection room on a busy
# machine: a test of an unreachable server takes SERVER_AWAY.
FAST = {
    "PEP_RETRY_BASE": "0.1",
    "PEP_RETRY_CAP": "0.5",
    "PEP_SERVER_DEADLINE": "15",
    "PEP_NETWORK_DEADLINE": "2",
    "PEP_FCC_START_TIMEOUT": "10",
    "PEP_FCC_EXIT_TIMEOUT": "10",
    "PEP_HTTP_TIMEOUT": "20",
    "PEP_LED_BACKEND": "none",
}
# Against a server that is away on purpose: the agent gives up after 2 s.
SERVER_AWAY = {"PEP_SERVER_DEADLINE": "2"}
# Against a server that never injects FCC (a stub, a hostile server): after an answer, the
# agent waits up to PEP_FCC_EXIT_TIMEOUT for an FCC that has nothing to store. A test whose
# subject is not that wait keeps it short.
NO_INJECTION = {"PEP_FCC_EXIT_TIMEOUT": "1"}


def agent_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("PEP_") and k not in ("NOTIFY_SOCKET", "JOURNAL_STREAM",
                                                      "INVOCATION_ID")}
    env.update(FAST)
    env.update(extra)
    return env


def run_agent(*args: str, env: dict[str, str] | None = None, timeout: float = 120,
              crash_at: str = "", crash_signal: str = "KILL"
              ) -> subprocess.CompletedProcess[str]:
    """The agent's command line; with `crash_at` (STEP:WHEN), killed by `crash_signal` there."""
    argv = [*AGENT, *args]
    env = dict(env or agent_env())
    if crash_at:
        argv = [*CRASHING_AGENT, crash_at, crash_signal, *args]
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env,
                          stdin=subprocess.DEVNULL, check=False)


def provision(root: Path, server_url: str, serial: str, fcc: str, *more: str,
              env: dict[str, str] | None = None, timeout: float = 120, crash_at: str = "",
              crash_signal: str = "KILL") -> subprocess.CompletedProcess[str]:
    return run_agent("provision", "--root", str(root), "--server", server_url,
                     "--serial", serial, "--interface", "lo", "--fcc-command", fcc,
                     "--no-reboot", *more, env=env, timeout=timeout, crash_at=crash_at,
                     crash_signal=crash_signal)


def status(root: Path) -> dict[str, Any]:
    out = run_agent("status", "--root", str(root), "--json")
    return dict(json.loads(out.stdout))


# Ports free_port() holds: bound, never listening, so a connection to one is refused and no
# other process (another test's server, on a busy machine running tests side by side) can
# take the port while a test counts on nothing answering there.
_held: dict[int, socket.socket] = {}


def free_port() -> int:
    """A loopback port nothing listens on, held so until release_port(port) (start_server
    calls it) or the end of the test."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = int(sock.getsockname()[1])
    _held[port] = sock
    return port


def release_port(port: int) -> None:
    """Let a server bind a port free_port() holds (nothing if it holds none)."""
    sock = _held.pop(port, None)
    if sock is not None:
        sock.close()


def release_ports() -> None:
    for port in list(_held):
        release_port(port)


def service_log(root: Path) -> list[str]:
    path = root / "userdata/pep-agent/sandbox-services.log"
    if not path.exists():
        return []
    return [line.split(" ", 1)[1] for line in path.read_text().splitlines()]
