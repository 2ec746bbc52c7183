"""A virtual gateway: an overlay of the cached root, booted with systemd-nspawn.

Side effects: mounts an overlayfs (cached root read-only below, the test's directory above),
starts and stops systemd-nspawn (which boots systemd in the given network namespace), and runs
commands inside the container by entering its namespaces with nsenter. Only processes this
module started are signalled, by pid.

Why nsenter: with --register=no there is no machined, so machinectl shell/systemd-run -M do
not work; entering the namespaces of the container's PID 1 gives a shell-like session (same
mount, PID, network, IPC and UTS namespaces), much as an operator's ssh login would.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Optional, TypeVar

T = TypeVar("T")

BOOT_TIMEOUT = 90.0
POWEROFF_TIMEOUT = 60.0
COMMAND_TIMEOUT = 60.0
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# systemd-nspawn's exit status when the container rebooted (see systemd-nspawn(1)).
REBOOT_STATUS = 133


def wait_for(check: Callable[[], Optional[T]], *, timeout: float, what: str,
             interval: float = 0.5) -> T:
    """Poll `check` until it returns something other than None; bounded by `timeout`."""
    deadline = time.monotonic() + timeout
    attempts = 0
    while True:
        attempts += 1
        value = check()
        if value is not None:
            return value
        if time.monotonic() >= deadline or attempts > timeout / interval * 4 + 10:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


class Gateway:
    """One virtual gateway; `root` is its file system as the host sees it."""

    def __init__(self, name: str, base: Path, work: Path, netns_path: str) -> None:
        self.name = name
        self.base = base
        self.work = work
        self.netns_path = netns_path
        self.root = work / "root"
        self.boots = 0
        # Extra systemd-nspawn options for every later boot (e.g. a volatile /var/lib).
        self.boot_options: list[str] = []
        self._proc: subprocess.Popen[bytes] | None = None
        self._console: IO[bytes] | None = None
        self._leader: int | None = None
        self._mounted = False

    # -- file system -------------------------------------------------------------------
    def mount(self) -> None:
        upper, scratch = self.work / "upper", self.work / "overlay-work"
        for directory in (self.root, upper, scratch):
            directory.mkdir(parents=True, exist_ok=True)
        options = f"lowerdir={self.base},upperdir={upper},workdir={scratch}"
        subprocess.run(["mount", "-t", "overlay", "overlay", "-o", options, str(self.root)],
                       check=True, timeout=30)
        self._mounted = True

    def unmount(self) -> None:
        if self._mounted:
            subprocess.run(["umount", str(self.root)], check=False, timeout=60)
            self._mounted = False

    # -- lifecycle ---------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def console_log(self, boot: int | None = None) -> Path:
        return self.work / f"console-{boot or self.boots}.log"

    def boot(self) -> None:
        """Start the container; returns once its systemd answers on its bus."""
        assert not self.running, "already booted"
        self.boots += 1
        self._console = open(self.console_log(), "wb")  # noqa: SIM115 - closed in _reap
        argv = [
            "systemd-nspawn", "--boot", "--register=no", "--keep-unit",
            f"--directory={self.root}", f"--machine={self.name}",
            f"--network-namespace-path={self.netns_path}",
            "--console=read-only", "--link-journal=no", "--settings=no",
            "--timezone=off", "--resolv-conf=off", *self.boot_options,
        ]
        self._proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self._console,
                                      stderr=subprocess.STDOUT, start_new_session=True)
        self._leader = None
        wait_for(self._find_leader, timeout=BOOT_TIMEOUT, what="the container's PID 1")
        wait_for(self._systemd_answers, timeout=BOOT_TIMEOUT, what="systemd in the container")

    def _find_leader(self) -> int | None:
        if not self.running:
            raise RuntimeError(f"systemd-nspawn exited; see {self.console_log()}")
        assert self._proc is not None
        own_ns = os.readlink("/proc/self/ns/pid")
        try:
            children = Path(f"/proc/{self._proc.pid}/task/{self._proc.pid}/children")
            for pid in children.read_text().split():
                if os.readlink(f"/proc/{pid}/ns/pid") != own_ns:
                    self._leader = int(pid)
                    return self._leader
        except OSError:
            return None
        return None

    def _systemd_answers(self) -> bool | None:
        if not self.running:
            raise RuntimeError(f"the gateway stopped while booting; see {self.console_log()}")
        state = self.run(["systemctl", "is-system-running"], check=False).stdout.strip()
        return True if state in {"initializing", "starting", "running", "degraded"} else None

    def wait_exit(self, timeout: float, watch: Callable[[], None] | None = None) -> int:
        """Wait for the container to stop by itself (reboot, poweroff); its exit status.

        `watch` runs every few seconds while it is up and may raise to fail early.
        """
        assert self._proc is not None
        deadline = time.monotonic() + timeout
        while True:
            try:
                code = self._proc.wait(timeout=min(3.0, max(0.1, deadline - time.monotonic())))
                break
            except subprocess.TimeoutExpired:
                if time.monotonic() >= deadline:
                    tail = self.journal("-n", "25", "-q")
                    raise TimeoutError(f"the gateway did not stop within {timeout:.0f}s; its "
                                       f"journal ends with:\n{tail}") from None
                if watch is not None and self.running:
                    watch()
        self._reap()
        return code

    def poweroff(self, timeout: float = POWEROFF_TIMEOUT) -> None:
        """Shut down cleanly (nspawn turns SIGTERM into a poweroff request), else kill."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self._reap()

    def kill(self) -> None:
        """A power cut: SIGKILL to the container's PID 1 and to systemd-nspawn."""
        for pid in (self._leader, self._proc.pid if self._proc else None):
            if pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        if self._proc is not None:
            self._proc.wait(timeout=30)
        self._reap()

    def _reap(self) -> None:
        if self._console is not None:
            self._console.close()
            self._console = None
        self._leader = None

    def close(self) -> None:
        """Finaliser: power off whatever runs and unmount; safe after any failure."""
        try:
            self.poweroff()
        finally:
            self.unmount()

    # -- inside ------------------------------------------------------------------------
    def run(self, argv: list[str], *, timeout: float = COMMAND_TIMEOUT, check: bool = True,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """Run argv inside the booted gateway with a clean environment; output as text."""
        if self._leader is None:
            raise RuntimeError("the gateway is not running")
        environment = {"PATH": PATH, "LANG": "C.UTF-8", "SYSTEMD_PAGER": "", "TERM": "dumb"}
        environment.update(env or {})
        command = ["nsenter", f"--target={self._leader}", "--all", "--root", "--wd",
                   "--", "env", "-i", *(f"{k}={v}" for k, v in environment.items()), *argv]
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                                stdin=subprocess.DEVNULL, check=False)
        if check and result.returncode != 0:
            raise AssertionError(
                f"{' '.join(argv)} exited {result.returncode}\n"
                f"stdout: {result.stdout}\nstderr: {result.stderr}")
        return result

    def journal(self, *args: str) -> str:
        """journalctl output: inside while running, else from the root's persistent journal."""
        if self.running:
            return self.run(["journalctl", "--no-pager", *args], check=False).stdout
        result = subprocess.run(
            ["journalctl", "--no-pager", f"--directory={self.root / 'var/log/journal'}", *args],
            capture_output=True, text=True, timeout=COMMAND_TIMEOUT, check=False)
        return result.stdout

    def unit_property(self, unit: str, name: str) -> str:
        out = self.run(["systemctl", "show", "-P", name, unit]).stdout
        return out.strip()

    def path(self, absolute: str) -> Path:
        """A gateway path as the host sees it."""
        return self.root / absolute.lstrip("/")
