"""Starting a simulator and knowing when it listens: its port file.

`pep-agent sim server|fcc --port-file PATH` writes `HOST:PORT` to PATH (atomically, by rename)
once its socket listens. The tests, the benchmarks and the virtual-gateway tests start the
simulators through this module and wait for that file rather than parse their output.

Side effects: writes a port file (write_port_file); starts simulator processes in their own
session and stops them by pid (start, Simulator.stop); reads port files.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from pep_agent.system import proc

START_TIMEOUT = 30.0
STOP_GRACE = 5.0
_POLL = 0.01


def write_port_file(path: Path, host: str, port: int) -> None:
    """HOST:PORT into path, seen whole or not at all by a reader (rename over it)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(f"{host}:{port}\n")
    os.replace(tmp, path)


def read_port_file(path: Path) -> tuple[str, int] | None:
    """(host, port) from a port file; None while it does not exist."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    host, _, port = text.strip().rpartition(":")
    return host, int(port)


def wait_for_port_file(path: Path, *, alive: Callable[[], bool],
                       timeout: float = START_TIMEOUT) -> tuple[str, int]:
    """(host, port) once the port file exists; RuntimeError once the process has ended
    (alive() is false) or after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        found = read_port_file(path)
        if found is not None:
            return found
        if not alive():
            raise RuntimeError(f"the simulator exited before it wrote {path}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the simulator wrote no {path} within {timeout:g} s")
        time.sleep(_POLL)


@dataclass
class Simulator:
    """A simulator process (stdout and stderr merged in its pipe) and where it listens."""

    process: subprocess.Popen[bytes]
    host: str
    port: int

    def stop(self, grace: float = STOP_GRACE) -> int:
        """SIGTERM to its process group, SIGKILL after grace seconds; its exit status."""
        return proc.stop(self.process, grace=grace)


def start(argv: Sequence[str], port_file: Path, *, cwd: Path | None = None,
          env: Mapping[str, str] | None = None, timeout: float = START_TIMEOUT,
          on_spawn: Callable[[subprocess.Popen[bytes]], object] | None = None) -> Simulator:
    """Run `argv --port-file port_file` and wait until it listens.

    on_spawn gets the process first (e.g. to read its output, so that the pipe never fills);
    on a failure the process is stopped and RuntimeError names the file.
    """
    port_file.unlink(missing_ok=True)  # a stale one from an earlier run would answer at once
    child = proc.spawn([*argv, "--port-file", str(port_file)], env=env, cwd=cwd)
    if on_spawn is not None:
        on_spawn(child)
    try:
        host, port = wait_for_port_file(port_file, alive=lambda: child.poll() is None,
                                        timeout=timeout)
    except RuntimeError:
        proc.stop(child, grace=STOP_GRACE)
        raise
    return Simulator(child, host, port)
