"""One run at a time: an exclusive, non-blocking flock on a file in the state directory.

Side effects: creates the state directory and the lock file; holds an open descriptor. The kernel
drops the lock when the process dies, so a crashed run never leaves a stale lock. The file lives
in the state directory, not the unit's runtime directory: systemd deletes that one whenever the
unit stops or restarts, and a fresh file there would let a second run take a second lock while
the first still holds the old one.
"""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path
from types import TracebackType

from pep_agent.errors import BusyError, StateError


class RunLock:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd: int | None = None

    def __enter__(self) -> RunLock:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            # O_NOFOLLOW: a symlink planted at the lock path must not make us truncate its target.
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise StateError(f"the run lock {self.path} is a symbolic link; refusing it",
                                   hint=f"remove it (rm {self.path}) and run again") from None
            raise  # the caller names the state directory and the setting that moves it
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise BusyError("another pep-agent provisioning run is active") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self.fd = fd
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
