"""The one place tests start simulator processes: the pep server and FCC stand-ins.

Both run as real processes through `pep-agent sim ...` (the console entry point, via
`python -m pep_agent`) and are started and stopped through pep_agent.system.proc. Every wait
here is bounded; every process started here is stopped by pid (its own process group).
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import requests

from pep_agent.gateway.fcc import parse_fcc_address
from pep_agent.sim import harness
from pep_agent.system import proc
from tests.agentprocs import release_port

START_TIMEOUT = 30.0
STOP_GRACE = 5.0
HTTP_TIMEOUT = 30.0
# Knobs the `sim server` command line takes; the others are set over HTTP after start.
_CLI_KNOBS = ("fail_next", "fail_status", "delay", "drop_next", "fcc_timeout")
_MAX_LINES = 20_000


def sim_argv(*args: str) -> list[str]:
    """argv of `pep-agent sim ARGS...` with the interpreter running the tests."""
    return [sys.executable, "-m", "pep_agent", "sim", *args]


class LineReader:
    """Collects a process's output lines in a thread, so that pipes never fill up."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._lines: list[str] = []
        self._cond = threading.Condition()
        self._done = False
        self._thread = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self._thread.start()

    def _pump(self, stream: IO[bytes]) -> None:
        for raw in iter(stream.readline, b""):
            with self._cond:
                self._lines.append(raw.decode(errors="replace").rstrip("\n"))
                del self._lines[:-_MAX_LINES]
                self._cond.notify_all()
        with self._cond:
            self._done = True
            self._cond.notify_all()

    @property
    def lines(self) -> list[str]:
        with self._cond:
            return list(self._lines)

    def text(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, pattern: re.Pattern[str] | str, timeout: float) -> re.Match[str] | None:
        """The first line matching pattern, waiting at most timeout; None at EOF or timeout."""
        regex = re.compile(pattern) if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + timeout
        seen = 0
        with self._cond:
            while True:
                for line in self._lines[seen:]:
                    found = regex.search(line)
                    if found:
                        return found
                seen = len(self._lines)
                remaining = deadline - time.monotonic()
                if self._done or remaining <= 0:
                    return None
                self._cond.wait(remaining)

    def close(self, timeout: float = STOP_GRACE) -> None:
        self._thread.join(timeout)


def _reader(child: subprocess.Popen[bytes]) -> LineReader:
    assert child.stdout is not None
    return LineReader(child.stdout)


@dataclass
class SimServer:
    """A running `pep-agent sim server`."""

    process: subprocess.Popen[bytes]
    output: LineReader
    url: str
    db: Path
    session: requests.Session = field(default_factory=requests.Session)

    def get(self, path: str, **params: Any) -> requests.Response:
        return self.session.get(self.url + path, params=params, timeout=HTTP_TIMEOUT)

    def faults(self) -> dict[str, Any]:
        reply = self.session.get(self.url + "/_sim/faults", timeout=HTTP_TIMEOUT)
        reply.raise_for_status()
        result: dict[str, Any] = reply.json()
        return result

    def set_faults(self, **knobs: Any) -> dict[str, Any]:
        """Change fault knobs at run time; returns all knobs after the change."""
        reply = self.session.post(self.url + "/_sim/faults", json=knobs, timeout=HTTP_TIMEOUT)
        reply.raise_for_status()
        result: dict[str, Any] = reply.json()
        return result

    def stop(self) -> int:
        self.session.close()
        code = proc.stop(self.process, grace=STOP_GRACE)
        self.output.close()
        return code


def start_server(tmp_path: Path, *, port: int = 0, **fault_kwargs: Any) -> SimServer:
    """Start the pep server on 127.0.0.1 (a free port, or `port`) with its records in tmp_path.

    Skips the calling test where the server cannot run: without the 'sim' extra (cryptography).
    """
    if importlib.util.find_spec("cryptography") is None:
        import pytest

        pytest.skip("the simulated pep server needs the 'sim' extra (cryptography)")
    tmp_path.mkdir(parents=True, exist_ok=True)
    release_port(port)
    db = tmp_path / "pep-sim.sqlite"
    argv = sim_argv("server", "--host", "127.0.0.1", "--port", str(port), "--db", str(db))
    for name in _CLI_KNOBS:
        if name in fault_kwargs:
            argv += ["--" + name.replace("_", "-"), str(fault_kwargs[name])]
    readers: list[LineReader] = []
    try:
        sim = harness.start(argv, tmp_path / "port", cwd=tmp_path, timeout=START_TIMEOUT,
                            on_spawn=lambda child: readers.append(_reader(child)))
    except RuntimeError as e:
        raise RuntimeError(f"{e}:\n{readers[0].text() if readers else ''}") from None
    server = SimServer(sim.process, readers[0], f"http://{sim.host}:{sim.port}", db)
    rest = {k: v for k, v in fault_kwargs.items() if k not in _CLI_KNOBS}
    if rest:
        server.set_faults(**rest)
    return server


def real_fcc() -> str | None:
    """PEP_REAL_FCC: a real factory-configurator-client-example to use in place of `sim fcc`."""
    return os.environ.get("PEP_REAL_FCC") or None


# What stored_endpoint gives for the real FCC, whose stored data is encrypted with its device key.
ENCRYPTED = "<encrypted by the real FCC>"


def stored_endpoint(working: Path) -> str:
    """The endpoint name FCC stored in a pal/WORKING folder.

    The simulator's items are readable; the real FCC's (PEP_REAL_FCC) are not, so for it only
    the file under the item's hashed name, with that name in its header, is checked, and
    ENCRYPTED is returned.
    """
    from pep_agent.gateway import esfs
    from pep_agent.sim import esfs_codec
    typed = "CfgParam_mbed.EndpointName"
    if real_fcc() is None:
        return esfs_codec.read_item(working, typed).decode()
    header = esfs.parse_header((working / esfs.file_name(typed)).read_bytes())
    if header.name != typed:
        raise AssertionError(f"{esfs.file_name(typed)} holds {header.name!r}, not {typed}")
    return ENCRYPTED


def fcc_argv(parsec: bool = False, mcc_config: Path | None = None,
             fault: str | None = None, sim: bool = False) -> list[str]:
    """argv of the FCC: the real one when there is one (real_fcc), else `sim fcc`.

    `sim fcc` whatever there is with `sim`, and for a test that needs a simulator fault or
    Parsec: the real FCC has no faults to order and is built without Parsec.
    """
    real = real_fcc()
    if real is not None and not sim and fault is None and not parsec:
        # Without ENTROPYSOURCE the real FCC reads /dev/random ("this can take a long time").
        return ["env", "ENTROPYSOURCE=/dev/urandom", real]
    # Like the real FCC, sim fcc prints its port a moment before it listens: the agent's probe
    # retries a refused connection, and every test here goes through that window.
    argv = sim_argv("fcc")
    if parsec:
        argv.append("--parsec")
    if mcc_config is not None:
        argv += ["--mcc-config", str(mcc_config)]
    if fault is not None:
        argv += ["--fault", fault]
    return argv


def fcc_command(parsec: bool = False, mcc_config: Path | None = None,
                fault: str | None = None, sim: bool = False) -> str:
    """The command line the agent gets as --fcc-command to run FCC (fcc_argv)."""
    return shlex.join(fcc_argv(parsec, mcc_config, fault, sim))


@dataclass
class SimFcc:
    """A running `pep-agent sim fcc`; ip and port are set once it printed them."""

    process: subprocess.Popen[bytes]
    output: LineReader
    cwd: Path
    ip: str | None = None
    port: int | None = None

    def wait_exit(self, timeout: float) -> int | None:
        return proc.wait(self.process, deadline=time.monotonic() + timeout)

    def stop(self, grace: float = STOP_GRACE) -> int:
        code = proc.stop(self.process, grace=grace)
        self.output.close()
        return code


def start_fcc(cwd: Path, *, iface: str = "lo", parsec: bool = False,
              mcc_config: Path | None = None, fault: str | None = None,
              env: Mapping[str, str] | None = None, wait_port: bool = True,
              wrapper: Sequence[str] = (), argv: Sequence[str] | None = None) -> SimFcc:
    """Start `sim fcc` (or argv) in cwd on iface; with wait_port, waits until it listens: for
    sim fcc its port file, for argv (the real FCC) its output. The tests that start FCC
    themselves test the simulators, and read what sim fcc stored.

    wrapper is a command prefix, e.g. ("unshare", "--net") to run it in a fresh namespace.
    """
    cwd.mkdir(parents=True, exist_ok=True)
    child_env = {**os.environ, "ETHERNET_LINUX_IFACE_NAME": iface, **(env or {})}
    ours = argv is None
    argv = [*wrapper, *(argv if argv is not None else fcc_argv(parsec, mcc_config, fault,
                                                              sim=True))]
    if not wait_port or not ours:
        child = proc.spawn(argv, env=child_env, cwd=cwd)
        fcc = SimFcc(child, _reader(child), cwd)
        if wait_port:
            _wait_printed_address(fcc)
        return fcc
    readers: list[LineReader] = []
    try:
        sim = harness.start(argv, cwd / "fcc.port", cwd=cwd, env=child_env,
                            timeout=START_TIMEOUT,
                            on_spawn=lambda child: readers.append(_reader(child)))
    except RuntimeError as e:
        raise RuntimeError(f"{e}:\n{readers[0].text() if readers else ''}") from None
    return SimFcc(sim.process, readers[0], cwd, sim.host, sim.port)


def _wait_printed_address(fcc: SimFcc) -> None:
    """An FCC without a port file: its address as the agent reads it, then its waiting line
    (it prints its address just before listen(), and listens once it says it waits)."""
    printed = fcc.output.wait_for("Client IP Address and Port", START_TIMEOUT)
    address = None if printed is None else parse_fcc_address(printed.string)
    if address is None or fcc.output.wait_for(
            "^ Client is waiting for incoming connection", START_TIMEOUT) is None:
        fcc.stop()
        raise RuntimeError(f"the FCC printed no address or never waited:\n{fcc.output.text()}")
    fcc.ip, fcc.port = address
