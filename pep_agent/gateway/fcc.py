"""FCC, the factory-configurator-client: start it, learn its IP and port, wait for it to exit.

Side effects: spawns the FCC process (through the process funnel), reads its output on a
thread, opens one TCP probe connection to the port it reports, and stops it on failure.
"""

from __future__ import annotations

import collections
import logging
import os
import queue
import re
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from pep_agent.errors import FccExchangeError, FccExitedError, FccStartError, NetworkError
from pep_agent.system import netinfo, proc

log = logging.getLogger(__name__)

ADDRESS_RE = re.compile(r"Client IP Address and Port :\s+(\d{1,3}(?:\.\d{1,3}){3}):(\d+)")
ANSI_RE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# FCC's storage errors: its ESFS and flashSim layers' error traces, and PAL's file system
# status codes (0xFC0000xx). PAL turns ENOSPC into a generic one (e.g. "esfs_copy_file() -
# pal_fsFclose() for dst file failed with pal_status = 0xfc000010"), then FCC crashes.
STORAGE_ERROR_RE = re.compile(
    r"\[ERR\s*\]\[(?:esfs|sotp)\s*\]|pal_status = 0x[fF][cC]0000[0-9a-fA-F]{2}\b")


def parse_fcc_address(line: str) -> tuple[str, int] | None:
    """(ip, port) from FCC's `Client IP Address and Port :  A.B.C.D:P` line, None for any
    other line; FccStartError when that line names an address no client can reach (FCC
    prints it once and never another, so waiting would only wait out the start timeout)."""
    text = ANSI_RE.sub("", line)
    m = ADDRESS_RE.search(text)
    if not m:
        return None
    ip, port = m.group(1), int(m.group(2))
    if not all(0 <= int(o) <= 255 for o in ip.split(".")) or not 0 < port < 65536:
        raise FccStartError(f"FCC printed an unusable address: {text.strip()[:160]!r}",
                            hint="FCC could not bind a TCP port on the interface: check the "
                                 "interface (--interface) has an IPv4 address, then run again")
    return ip, port


# What FCC prints once an injection went through, in order.
PROCESSED = "Successfully processed comm message"
COMPLETED = "Successfully completed factory flow"
# wait_exit runs once the server has answered, and its answer is saved: a rerun never asks
# the server again; it installs what FCC stored, and stops with exit 22 if FCC stored nothing.
_RESUMES = "`pep-agent provision` again resumes from the server's saved answer"


def exchange_hint(lines: Sequence[str], exit_status: int | None) -> str:
    """The operator's hint after FCC failed to end cleanly, from what FCC printed last.

    `exit_status` is None when FCC did not exit in time (it was stopped).
    """
    text = [ANSI_RE.sub("", line) for line in lines]
    if any(COMPLETED in line for line in text):
        seen = f"FCC printed '{COMPLETED}'"
        if exit_status is None:
            return (f"{seen} but did not exit, so the credentials should be stored; "
                    f"{_RESUMES} and installs them")
        return (f"{seen} but exited with status {exit_status}; {_RESUMES} and installs the "
                "credentials if FCC stored them")
    if any(PROCESSED in line for line in text):
        seen = "FCC processed the server's message but never reported a completed factory flow"
    else:
        seen = "FCC did not complete the factory exchange (see its output in the journal)"
    return f"{seen}; {_RESUMES}, which stops with exit 22 if FCC stored no credentials"


def fcc_environment(interface: str, entropy: str | None,
                    base: Mapping[str, str] | None = None) -> dict[str, str]:
    """FCC's environment: ours, plus the interface it binds and the entropy source if set."""
    env = dict(os.environ if base is None else base)
    env["ETHERNET_LINUX_IFACE_NAME"] = interface
    if entropy:
        env["ENTROPYSOURCE"] = entropy
    return env


class FccSession:
    """One FCC process. Its output is drained continuously so that it never blocks on a pipe."""

    def __init__(self, child: proc.Child[bytes]) -> None:
        self.child = child
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.tail: collections.deque[str] = collections.deque(maxlen=20)
        self.storage_error: str | None = None  # the first storage error FCC printed
        self._reader = threading.Thread(target=self._drain, name="fcc-output", daemon=True)
        self._reader.start()

    @classmethod
    def start(cls, argv: Sequence[str], *, cwd: Path, env: Mapping[str, str]) -> FccSession:
        try:
            return cls(proc.spawn(argv, env=env, cwd=cwd))
        except proc.ProcessError as e:
            raise FccStartError(f"cannot start FCC ({argv[0]}): {e.reason}") from None

    @property
    def pid(self) -> int:
        return self.child.pid

    def _drain(self) -> None:
        assert self.child.stdout is not None
        for raw in self.child.stdout:
            line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
            self.tail.append(ANSI_RE.sub("", line))
            if self.storage_error is None and STORAGE_ERROR_RE.search(self.tail[-1]):
                self.storage_error = self.tail[-1].strip()
            log.debug("fcc: %s", line)
            self.lines.put(line)
        self.lines.put(None)

    def read_address(self, *, deadline: float) -> tuple[str, int]:
        """Wait for the address line until the monotonic `deadline`."""
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise FccStartError("FCC did not print its IP address and port in time"
                                    + self._tail_hint())
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                code = proc.wait(self.child, deadline=time.monotonic() + 5)
                if code is None:
                    raise FccStartError("FCC closed its output without printing its port"
                                        + self._tail_hint())
                raise self._exited(code, "before printing its port")
            found = parse_fcc_address(line)
            if found:
                return found

    def probe(self, ip: str, port: int, *, deadline: float, timeout: float = 5.0) -> None:
        """Confirm FCC listens there. FCC survives a connection closed before any token.

        The real FCC prints its port line a moment before it listens (with a backlog of one),
        so a refused connection is tried again, every 50 ms, until `deadline` (monotonic).
        """
        while True:
            problem = netinfo.tcp_probe(ip, port, timeout)
            if not problem:
                return
            code = self.child.poll()
            if code is not None:
                raise self._exited(code, f"after printing its port {ip}:{port}")
            if time.monotonic() >= deadline:
                raise FccStartError(f"FCC reported {ip}:{port} but nothing accepts connections "
                                    f"there ({problem})")
            time.sleep(0.05)

    def _exited(self, code: int, when: str) -> FccExitedError:
        """FCC exited before it was used: its status and its last lines. Nothing was sent to
        it yet, so its output holds no injected data."""
        # Its last lines arrive with its exit: read them all first.
        self._reader.join(timeout=5)
        last = [t.strip()[:160] for t in self.tail if t.strip()][-3:]
        said = f"; its last lines: {' | '.join(last)!r}" if last else "; it printed nothing"
        status = f"signal {-code}" if code < 0 else f"status {code}"
        return FccExitedError(f"FCC exited with {status} {when}{said}")

    def wait_exit(self, *, deadline: float) -> None:
        """FCC must exit 0 by `deadline`; otherwise it is stopped and FccExchangeError raised."""
        code = proc.wait(self.child, deadline=deadline)
        if code is None:
            self.stop()
            raise FccExchangeError("FCC did not exit after the factory exchange in time"
                                   + self._tail_hint(), hint=exchange_hint(self.tail, None))
        if code != 0:
            # Its last lines arrive with its exit: read them all before choosing the hint.
            self._reader.join(timeout=5)
            raise FccExchangeError(f"FCC exited with status {code}" + self._tail_hint(),
                                   hint=exchange_hint(self.tail, code))

    def storage_failure(self, grace: float = 1.0) -> str | None:
        """The first storage error FCC printed, if any, once all of its output is read: an
        FCC that failed an exchange exits (the real one crashes when its storage fails), so
        it is given `grace` seconds to, and its last lines arrive with its exit."""
        if proc.wait(self.child, deadline=time.monotonic() + grace) is not None:
            self._reader.join(timeout=5)
        return self.storage_error

    def stop(self) -> None:
        proc.stop(self.child)
        self._reader.join(timeout=5)

    def _tail_hint(self) -> str:
        last = [t.strip() for t in self.tail if t.strip()]
        return f"; its last line: {last[-1][:160]!r}" if last else ""


def check_ip_on_interface(ip: str, interface: str, addresses: Sequence[str]) -> None:
    """The IP sent to the server is FCC's; it must still be one of the interface's addresses.

    FCC was started on `interface` and reported an address of it, so a mismatch means the
    address changed since (a DHCP renewal or a cable moved), not that FCC chose another one.
    """
    if ip not in addresses:
        raise NetworkError(f"FCC reports IP {ip}, but {interface} now has "
                           f"{', '.join(addresses) or 'no IPv4 address'}: its address changed "
                           "after FCC started",
                           hint=f"run again once {interface} keeps its address; on a "
                                "production line give the gateway a static DHCP lease")
