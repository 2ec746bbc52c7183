"""The process funnel: every child process the agent runs or spawns goes through here.

Side effects: starts processes, sends them signals. Every call has a timeout or a deadline,
stdin is /dev/null, children never inherit the variables systemd meant for the agent alone
(NOTIFY_SOCKET, WATCHDOG_*), and failures raise ProcessError carrying argv, exit code and output.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

# The handle of a spawned child, so that callers need not import subprocess themselves.
Child = subprocess.Popen

# systemd addresses these to the unit's main process only. A child that inherits them sends
# its own notifications, which PID 1 rejects and logs ("reception only permitted for main
# PID") or, with NotifyAccess=all, would take as the agent's (a READY=1 from FCC).
MAIN_PROCESS_ONLY = frozenset({"NOTIFY_SOCKET", "WATCHDOG_PID", "WATCHDOG_USEC"})


class ProcessError(Exception):
    """A command failed, timed out or could not start."""

    def __init__(self, argv: Sequence[str], reason: str, returncode: int | None = None,
                 stdout: str = "", stderr: str = "") -> None:
        super().__init__(f"{argv[0] if argv else '?'}: {reason}")
        self.argv = list(argv)
        self.reason = reason
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr


@dataclass(frozen=True)
class Result:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str


def run(argv: Sequence[str], *, timeout: float, check: bool = True,
        env: Mapping[str, str] | None = None, cwd: Path | None = None) -> Result:
    """Run argv to completion within `timeout` seconds, capturing text output."""
    try:
        cp = subprocess.run(
            list(argv), stdin=subprocess.DEVNULL, capture_output=True, text=True,
            timeout=timeout, env=child_environment(env), cwd=cwd, check=False,
        )
    except FileNotFoundError:
        raise ProcessError(argv, "command not found") from None
    except PermissionError:
        raise ProcessError(argv, "not executable") from None
    except subprocess.TimeoutExpired as e:
        raise ProcessError(argv, f"timed out after {timeout:g} s",
                           stdout=_text(e.stdout), stderr=_text(e.stderr)) from None
    result = Result(list(argv), cp.returncode, cp.stdout, cp.stderr)
    if check and cp.returncode != 0:
        raise ProcessError(argv, f"exited with status {cp.returncode}", cp.returncode,
                           cp.stdout, cp.stderr)
    return result


def child_environment(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment a child gets: `env` (default: ours) without MAIN_PROCESS_ONLY."""
    base = os.environ if env is None else env
    return {k: v for k, v in base.items() if k not in MAIN_PROCESS_ONLY}


def spawn(argv: Sequence[str], *, env: Mapping[str, str] | None = None,
          cwd: Path | None = None) -> subprocess.Popen[bytes]:
    """Start a long-running child whose stdout (merged with stderr) the caller reads.

    The child gets its own session so that a stop can reach its whole process group.
    """
    try:
        return subprocess.Popen(
            list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, env=child_environment(env), cwd=cwd,
            start_new_session=True,
        )
    except FileNotFoundError:
        raise ProcessError(argv, "command not found") from None
    except PermissionError:
        raise ProcessError(argv, "not executable") from None
    except OSError as e:
        raise ProcessError(argv, f"cannot start: {e.strerror}") from None


def stop(child: subprocess.Popen[bytes], *, grace: float = 5.0) -> int:
    """Terminate a spawned child: SIGTERM to its group, then SIGKILL after `grace` seconds."""
    if child.poll() is None:
        _signal_group(child.pid, signal.SIGTERM)
        try:
            child.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            _signal_group(child.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=grace)
    # A grandchild that outlived its parent in the same group must not linger either.
    _signal_group(child.pid, signal.SIGKILL)
    return child.returncode


def wait(child: subprocess.Popen[bytes], *, deadline: float) -> int | None:
    """Wait until the child exits or the monotonic `deadline` passes; None on timeout."""
    try:
        return child.wait(timeout=max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        return None


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _text(data: bytes | str | None) -> str:
    if data is None:
        return ""
    return data.decode(errors="replace") if isinstance(data, bytes) else data


def process_start_time(pid: int) -> float | None:
    """The kernel's start time of `pid` (to recognise it later despite pid reuse)."""
    try:
        return float(psutil.Process(pid).create_time())
    except psutil.Error:
        return None


def same_process(pid: int, started: float | None) -> bool:
    """`pid` lives and, when its start time was recorded (process_start_time), is still that
    process: after a crash or a reboot the pid may belong to somebody else."""
    try:
        return started is None or abs(psutil.Process(pid).create_time() - started) <= 0.05
    except psutil.Error:
        return False


def reap_leftover(pid: int, started: float | None, *, grace: float = 5.0,
                  wait_first: float = 0.0) -> bool:
    """End a process left over from a crashed run, and its process group, if it is still the
    same process.

    FCC was spawned as the leader of its own group, so a wrapper that does not `exec` (and
    anything else it started) is ended with it. Waits up to `wait_first` seconds for the
    group to exit on its own, then SIGTERM, then SIGKILL. Returns True when such a process was
    found. Nothing is signalled unless the leader's start time matches: a reused pid belongs to
    somebody else.
    """
    if not same_process(pid, started):
        return False  # gone, or the pid now belongs to somebody else
    try:
        p = psutil.Process(pid)
        group = os.getpgid(pid) == pid
    except (psutil.Error, ProcessLookupError):
        return False
    members = _group_members(pid) if group else [p]
    if wait_first > 0 and _all_gone(members, time.monotonic() + wait_first):
        return True
    for sig in (signal.SIGTERM, signal.SIGKILL):
        # While any member lives, the group id cannot be reused, so the group is still ours.
        if group:
            _signal_group(pid, sig)
        else:
            with contextlib.suppress(psutil.Error):
                p.send_signal(sig)
        if _all_gone(members, time.monotonic() + grace):
            break
    return True


def _group_members(pgid: int) -> list[psutil.Process]:
    """The live processes of process group `pgid`."""
    members = []
    for p in psutil.process_iter():
        with contextlib.suppress(psutil.Error, ProcessLookupError, PermissionError):
            if os.getpgid(p.pid) == pgid:
                members.append(p)
    return members


def _all_gone(members: list[psutil.Process], deadline: float) -> bool:
    """Wait until every process has ended (a zombie has) or the monotonic deadline passes."""
    def gone(p: psutil.Process) -> bool:
        try:
            return not p.is_running() or p.status() == psutil.STATUS_ZOMBIE
        except psutil.Error:
            return True

    # Bounded by the deadline; the pause keeps the poll cheap on a two-core gateway.
    while not all(gone(p) for p in members):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def which(name: str) -> str | None:
    """The full path of a command on PATH."""
    return shutil.which(name)
