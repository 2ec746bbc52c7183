"""The service manager funnel: systemctl on a gateway, a recording sandbox under any other root.

Side effects: Systemctl runs systemctl (daemon-reload, stop, start, restart, reboot) and writes
or removes the hold drop-in below /run/systemd/system; SandboxServices writes the same drop-in
under its root and appends what it would have done to a log file there, which is what keeps
the demo and the tests off the host.

How a unit is held (kept from starting while the agent provisions): a runtime drop-in with a
condition that is false as long as the drop-in exists. Masking cannot do this wherever the
unit file lives (a unit in /etc/systemd/system cannot be masked: "File … already exists"),
while drop-ins apply from every directory, so this works for units shipped in /usr/lib, written
by snapd in /etc, or installed by hand. The unit file, its enablement and any mask stay as they
were; releasing removes the drop-in and nothing else. A condition that fails skips the start
without an error, so Restart=always and units that want it do not end up failed. The drop-in
lives in /run, so a power cut drops it: pep-agent.service is ordered Before= the held unit and
reports READY=1 only once it holds the unit again (see flow/runner.py).
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Protocol

from pep_agent.errors import ConfigError, SystemdError
from pep_agent.settings.paths import Paths
from pep_agent.system import fsutil, proc


class ServiceManager(Protocol):
    def act(self, verb: str, unit: str) -> None: ...
    def hold(self, unit: str) -> None: ...
    def release(self, unit: str) -> None: ...
    def reboot(self) -> None: ...


def systemctl_argv(verb: str, unit: str | None = None) -> list[str]:
    """The systemctl command line for one verb (stop, start, restart, daemon-reload, reboot)."""
    argv = ["systemctl", "--no-ask-password", verb]
    return [*argv, unit] if unit else argv


def hold_dropin(path: str) -> str:
    """The text of the hold drop-in whose machine path is `path`."""
    return (
        "# Written by pep-agent while it provisions this gateway, removed when it is done:\n"
        "# the unit does not start as long as this file exists. Deleting it by hand (then\n"
        "# `systemctl daemon-reload`) releases the unit.\n"
        "[Unit]\n"
        f"ConditionPathExists=!{path}\n"
    )


def _hold_path(paths: Paths, unit: str) -> Path:
    # The name becomes a directory name: nothing that could leave /run/systemd/system.
    if not unit or "/" in unit or unit.startswith(".") or "\n" in unit:
        raise ConfigError(f"invalid unit name {unit!r}",
                          hint="name a systemd unit, e.g. edge-core.service")
    return paths.unit_hold(unit)


def place_hold(paths: Paths, unit: str) -> None:
    """Write the hold drop-in for `unit` (readable by all, as unit files are)."""
    path = _hold_path(paths, unit)
    machine_path = "/" + str(path.relative_to(paths.root)).lstrip("/")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.parent.chmod(0o755)
        fsutil.atomic_write(path, hold_dropin(machine_path).encode(), mode=0o644)
    except OSError as e:
        raise SystemdError(
            f"cannot hold {unit}: writing {machine_path}: {e.strerror or e}",
            hint="the agent's unit needs ReadWritePaths=/run/systemd/system") from None


def remove_hold(paths: Paths, unit: str) -> bool:
    """Remove the hold drop-in of `unit` (and its directory when that is left empty)."""
    path = _hold_path(paths, unit)
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    except OSError as e:
        raise SystemdError(f"cannot release {unit}: removing {path}: {e.strerror or e}",
                           hint="delete that file, then run `systemctl daemon-reload`") from None
    with contextlib.suppress(OSError):
        path.parent.rmdir()  # only when empty: other drop-ins there are not ours
    return True


class Systemctl:
    """The real thing, for a gateway whose root is /."""

    def __init__(self, paths: Paths, timeout: float = 90.0) -> None:
        self.paths = paths
        self.timeout = timeout

    def act(self, verb: str, unit: str) -> None:
        self._systemctl(verb, unit)

    def hold(self, unit: str) -> None:
        """Keep `unit` from starting (whoever asks), and stop it if it runs."""
        place_hold(self.paths, unit)
        self._systemctl("daemon-reload")
        self._systemctl("stop", unit)

    def release(self, unit: str) -> None:
        """Undo hold(): the unit may start again; it is not started here."""
        # The condition names the drop-in itself, so the unit is free as soon as the file is
        # gone; the reload only keeps systemd's view of the unit in step with the disk.
        if remove_hold(self.paths, unit):
            self._systemctl("daemon-reload")

    def reboot(self) -> None:
        self._systemctl("reboot")

    def _systemctl(self, verb: str, unit: str | None = None) -> None:
        try:
            proc.run(systemctl_argv(verb, unit), timeout=self.timeout)
        except proc.ProcessError as e:
            detail = (e.stderr or e.reason).strip().splitlines()
            what = f"systemctl {verb}{' ' + unit if unit else ''}"
            raise SystemdError(f"{what} failed: {detail[-1] if detail else e.reason}") from None


class SandboxServices:
    """Records each operation as `<epoch> <verb> <unit>` in a log under the sandbox root.

    hold/release also write and remove the drop-in under the root, as on a gateway.
    """

    def __init__(self, paths: Paths) -> None:
        self.paths = paths
        self.log = paths.sandbox_services

    def act(self, verb: str, unit: str) -> None:
        self._record(f"{verb} {unit}")

    def hold(self, unit: str) -> None:
        place_hold(self.paths, unit)
        self._record(f"hold {unit}")

    def release(self, unit: str) -> None:
        remove_hold(self.paths, unit)
        self._record(f"release {unit}")

    def reboot(self) -> None:
        self._record("reboot")

    def _record(self, line: str) -> None:
        fsutil.append_line(self.log, f"{time.time():.3f} {line}\n", mode=0o644)


def make_services(paths: Paths) -> ServiceManager:
    """systemctl when the root is /, the recording sandbox otherwise."""
    return SandboxServices(paths) if paths.sandboxed else Systemctl(paths)
