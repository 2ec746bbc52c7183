"""Measured child processes: start, wait with a deadline, and per-child resource usage.

Side effects: starts processes (each in its own session; a long-lived one with a parent-death
signal), writes their output to files, and on a timeout (or kill_all) signals that child's
process group and the descendants it started, by pid.

Each child is waited for with os.wait4 on its own pid (through a pidfd, so that the exit is
seen the moment it happens and a pid can never be confused with a reused one). wait4 gives the
usage of that one child; note that Linux folds into it the children it reaped itself (a
provision's FCC), so the agent's own peak memory is measured separately (see provision.py).
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

KILL_GRACE = 3.0


@dataclass(frozen=True)
class Finished:
    """How one child ended and what it cost."""

    argv: list[str]
    returncode: int  # negative: ended by that signal
    started: float  # time.perf_counter() just before the spawn
    ended: float  # time.perf_counter() when its exit was seen
    user_s: float
    sys_s: float
    maxrss_kb: int  # the child's peak, or that of a child it reaped, whichever is larger
    timed_out: bool
    stdout: Path
    stderr: Path

    @property
    def wall_s(self) -> float:
        return self.ended - self.started

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out

    def out(self) -> str:
        return self.stdout.read_text(encoding="utf-8", errors="replace")

    def err(self) -> str:
        return self.stderr.read_text(encoding="utf-8", errors="replace")

    def describe(self) -> str:
        """A short line for an error message (the last stderr line, never the whole output)."""
        tail = self.err().strip().splitlines()[-1:] or ["(no stderr)"]
        why = "timed out" if self.timed_out else f"exit {self.returncode}"
        return f"{self.argv[0]} {' '.join(self.argv[1:3])}: {why}: {tail[0][:200]}"


def _die_with_parent() -> Callable[[], None]:
    """A pre-exec hook: the child gets SIGTERM when the process that started it dies.

    prctl is looked up here, in the parent: between fork and exec only that call runs.
    """
    import ctypes

    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()
    pr_set_pdeathsig = 1

    def hook() -> None:
        prctl(pr_set_pdeathsig, int(signal.SIGTERM))
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return hook


class Child:
    """One running child, its output redirected to files.

    A long-lived child (the simulated server) takes `die_with_parent`: it gets SIGTERM if the
    benchmark itself is killed (SIGKILL, or a test's timeout), where no `finally` can stop it.
    Measured children do not: the extra step between fork and exec would count in their time.
    """

    def __init__(self, argv: Sequence[str], *, out_dir: Path, name: str,
                 env: Mapping[str, str] | None = None, cwd: Path | None = None,
                 die_with_parent: bool = False) -> None:
        self.argv = list(argv)
        self.stdout = out_dir / f"{name}.out"
        self.stderr = out_dir / f"{name}.err"
        hook = _die_with_parent() if die_with_parent else None
        global _spawning
        _spawning = True
        try:
            with self.stdout.open("wb") as out, self.stderr.open("wb") as err:
                self.started = time.perf_counter()
                self._popen = subprocess.Popen(
                    self.argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                    env=None if env is None else dict(env), cwd=cwd, start_new_session=True,
                    preexec_fn=hook)
            self.pid = self._popen.pid
            # Nothing else waits for this child, so the pid stays ours until we reap it.
            self.pidfd = os.pidfd_open(self.pid)
            self.result: Finished | None = None
            _RUNNING.add(self)
        finally:
            _spawning = False
        if _exit_pending is not None:
            raise SystemExit(_exit_pending)

    def reap(self, *, timed_out: bool = False) -> Finished:
        """Collect the exit of a child that has ended (or is being killed)."""
        ended = time.perf_counter()
        _, status, usage = os.wait4(self.pid, 0)
        os.close(self.pidfd)
        code = os.waitstatus_to_exitcode(status)
        self._popen.returncode = code  # so that Popen never waits for it again
        _RUNNING.discard(self)
        self.result = Finished(self.argv, code, self.started, ended, usage.ru_utime,
                               usage.ru_stime, usage.ru_maxrss, timed_out, self.stdout,
                               self.stderr)
        return self.result

    def kill(self, *, timed_out: bool = True) -> Finished:
        """SIGTERM, then SIGKILL after a grace, to the child, its group and its descendants."""
        descendants = _descendants(self.pid)
        with contextlib.suppress(ProcessLookupError):
            signal.pidfd_send_signal(self.pidfd, signal.SIGTERM)
        if not _readable(self.pidfd, KILL_GRACE):
            # The group exists while its leader is unreaped, so it is still the one we made.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGKILL)
        for proc in descendants:
            _kill_descendant(proc)
        return self.reap(timed_out=timed_out)

    def wait(self, timeout: float) -> Finished:
        """Wait at most timeout seconds, then kill."""
        if _readable(self.pidfd, timeout):
            return self.reap()
        return self.kill()


# Children not reaped yet: what kill_all stops when the benchmark ends early.
_RUNNING: set[Child] = set()
# A SIGTERM during a spawn waits until the child is in _RUNNING: raised inside Popen, it would
# leave a child that nothing knows of.
_spawning = False
_exit_pending: int | None = None


def exit_on_signal(signum: int, _frame: object) -> None:
    """Signal handler: end the benchmark through SystemExit, so that its `finally` runs."""
    global _exit_pending
    _exit_pending = 128 + signum
    if not _spawning:
        raise SystemExit(_exit_pending)


def kill_all() -> None:
    """Stop every child still running (a measurement failed or the run was interrupted)."""
    for child in list(_RUNNING):
        child.kill()


def run(argv: Sequence[str], *, out_dir: Path, name: str, timeout: float,
        env: Mapping[str, str] | None = None, cwd: Path | None = None) -> Finished:
    """Run one child to its end (killed after timeout seconds)."""
    return Child(argv, out_dir=out_dir, name=name, env=env, cwd=cwd).wait(timeout)


def wait_all(children: Sequence[Child], deadline: float) -> list[Finished]:
    """Wait for many children at once, noting each exit as it happens; kill what is left at
    the monotonic deadline. Results are in the order of `children`."""
    poller = select.poll()
    by_fd = {c.pidfd: c for c in children if c.result is None}
    for fd in by_fd:
        poller.register(fd, select.POLLIN)
    while by_fd:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        for fd, _ in poller.poll(min(remaining, 1.0) * 1000):
            poller.unregister(fd)
            by_fd.pop(fd).reap()
    for child in list(by_fd.values()):
        child.kill()
    return [c.result for c in children if c.result is not None]


def _readable(fd: int, timeout: float) -> bool:
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(max(0.0, timeout) * 1000))


def _descendants(pid: int) -> list[object]:
    """The processes a child started (e.g. the FCC a provision spawned in its own session)."""
    try:
        import psutil

        return list(psutil.Process(pid).children(recursive=True))
    except Exception:  # psutil missing or the child already gone: nothing to sweep
        return []


def _kill_descendant(proc: object) -> None:
    import psutil

    if isinstance(proc, psutil.Process):
        # psutil checks the process's start time, so a reused pid is never signalled.
        with contextlib.suppress(psutil.Error):
            proc.kill()
            proc.wait(KILL_GRACE)
