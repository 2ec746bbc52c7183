"""The service manager funnel: systemctl on a gateway, a recording sandbox under any other root.

Side effects: Systemctl runs systemctl (mask, stop, start, reboot); SandboxServices only appends
to a log file under the root, which is what keeps the demo and the tests off the host.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Protocol

from pep_agent.errors import SystemdError
from pep_agent.paths import Paths
from pep_agent.system import fsutil, proc


class ServiceManager(Protocol):
    def act(self, verb: str, unit: str) -> None: ...
    def reboot(self) -> None: ...


def systemctl_argv(verb: str, unit: str | None = None) -> list[str]:
    """The systemctl command line for one verb (mask, unmask, stop, start, restart, reboot)."""
    argv = ["systemctl", "--no-ask-password", verb]
    return [*argv, unit] if unit else argv


class Systemctl:
    """The real thing, for a gateway whose root is /."""

    def __init__(self, timeout: float = 90.0) -> None:
        self.timeout = timeout

    def act(self, verb: str, unit: str) -> None:
        try:
            proc.run(systemctl_argv(verb, unit), timeout=self.timeout)
        except proc.ProcessError as e:
            detail = (e.stderr or e.reason).strip().splitlines()
            raise SystemdError(f"systemctl {verb} {unit} failed: "
                               f"{detail[-1] if detail else e.reason}") from None

    def reboot(self) -> None:
        try:
            proc.run(systemctl_argv("reboot"), timeout=self.timeout)
        except proc.ProcessError as e:
            raise SystemdError(f"systemctl reboot failed: {e.reason}") from None


class SandboxServices:
    """Records each operation as `<epoch> <verb> <unit>` in a log under the sandbox root."""

    def __init__(self, log: Path) -> None:
        self.log = log

    def act(self, verb: str, unit: str) -> None:
        self._record(f"{verb} {unit}")

    def reboot(self) -> None:
        self._record("reboot")

    def _record(self, line: str) -> None:
        fsutil.append_line(self.log, f"{time.time():.3f} {line}\n", mode=0o644)


def make_services(paths: Paths) -> ServiceManager:
    """systemctl when the root is /, the recording sandbox otherwise."""
    return SandboxServices(paths.sandbox_services) if paths.sandboxed else Systemctl()
