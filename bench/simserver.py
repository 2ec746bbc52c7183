"""The simulated pep server and FCCs the benchmarks run against, and the environment of the
agent processes they start.

Side effects: starts `pep-agent sim server` on 127.0.0.1 and `pep-agent sim fcc` on lo (stopped
by pid), and sends HTTP requests to that server only.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.children import Child, Finished
from pep_agent.sim import harness

START_TIMEOUT = 30.0
HTTP_TIMEOUT = 120.0
# Variables that would change how the agent runs (journald, sd_notify, settings, profiling).
# PYTHONDONTWRITEBYTECODE goes too: a gateway image ships .pyc files, and without them every
# module edited since its last cached compile would be compiled again at each start.
_DROP = ("NOTIFY_SOCKET", "JOURNAL_STREAM", "INVOCATION_ID", "WATCHDOG_USEC", "WATCHDOG_PID",
         "PYTHONPROFILEIMPORTTIME", "PYTHONTRACEMALLOC", "PYTHONDEVMODE", "PYTHONVERBOSE",
         "PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED", "PYTHONPATH")


@dataclass(frozen=True)
class Tools:
    """The interpreter and console script of the environment under test."""

    bin_dir: Path

    @classmethod
    def current(cls) -> Tools:
        return cls(Path(sys.executable).parent)

    @property
    def python(self) -> str:
        return str(self.bin_dir / "python")

    @property
    def agent(self) -> str:
        return str(self.bin_dir / "pep-agent")

    @property
    def fcc_command(self) -> str:
        """What provision gets as --fcc-command: the FCC simulator, as the demo runs it."""
        return shlex.join([self.agent, "sim", "fcc"])

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("PEP_") and k not in _DROP}
        env["PATH"] = f"{self.bin_dir}{os.pathsep}{env.get('PATH', '')}"
        env.update(extra)
        return env


def wait_listening(child: Child, port_file: Path) -> tuple[str, int]:
    """Where a simulator started with `--port-file port_file` listens, once it does."""
    return harness.wait_for_port_file(port_file, timeout=START_TIMEOUT,
                                      alive=lambda: child.result is None and not _ended(child))


def _ended(child: Child) -> bool:
    import select

    poller = select.poll()
    poller.register(child.pidfd, select.POLLIN)
    return bool(poller.poll(0))


class SimServer:
    """A running `pep-agent sim server` on 127.0.0.1 with its records under work."""

    def __init__(self, tools: Tools, work: Path) -> None:
        work.mkdir(parents=True, exist_ok=True)
        port_file = work / "sim-server.port"
        port_file.unlink(missing_ok=True)
        argv = [tools.agent, "sim", "server", "--host", "127.0.0.1", "--port", "0",
                "--db", str(work / "pep-sim.sqlite"), "--port-file", str(port_file)]
        self.child = Child(argv, out_dir=work, name="sim-server", env=tools.env(),
                           die_with_parent=True)
        try:
            host, port = wait_listening(self.child, port_file)
        except RuntimeError:
            self.stop()
            raise
        self.url = f"http://{host}:{port}"

    def get(self, path: str, **params: str) -> bytes:
        url = f"{self.url}{path}?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT) as reply:  # noqa: S310 (loopback)
            body: bytes = reply.read()
        return body

    def identity(self, serial: str, ip: str, port: int) -> dict[str, Any]:
        doc: dict[str, Any] = json.loads(self.get(
            "/v3/identity", serialNumber=serial, ip=ip, port=str(port)))
        return doc

    def records(self) -> list[dict[str, Any]]:
        """Every record the server holds (it caps a page at 1000, so this follows next)."""
        found: list[dict[str, Any]] = []
        last = ""
        for _ in range(100):
            page = json.loads(self.get("/v3/enrollment-ids", limit="1000", order="ASC",
                                       last=last))
            results = page.get("results") or []
            if not results:
                break
            found.extend(results)
            last = str(results[-1].get("_id", ""))
            if not last:
                break
        return found

    def cpu_seconds(self) -> float:
        """User + system CPU the server process has used so far (all its threads)."""
        fields = (Path("/proc") / str(self.child.pid) / "stat").read_text().rsplit(")", 1)[1]
        utime, stime = fields.split()[11:13]
        return (int(utime) + int(stime)) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> Finished:
        """SIGTERM (the server stops cleanly on it), SIGKILL after a grace."""
        if self.child.result is not None:
            return self.child.result
        return self.child.kill(timed_out=False)


def start_fcc(tools: Tools, cwd: Path, name: str) -> tuple[Child, str, int]:
    """An FCC simulator on lo, as a provision would start it; returns it and its address."""
    cwd.mkdir(parents=True, exist_ok=True)
    port_file = cwd / "fcc.port"
    port_file.unlink(missing_ok=True)
    child = Child([*shlex.split(tools.fcc_command), "--port-file", str(port_file)],
                  out_dir=cwd.parent, name=name, cwd=cwd,
                  env=tools.env(ETHERNET_LINUX_IFACE_NAME="lo"))
    try:
        ip, port = wait_listening(child, port_file)
    except RuntimeError:
        child.kill()
        raise
    return child, ip, port
