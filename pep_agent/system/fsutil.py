"""The file funnel: durable writes and directory swaps.

Side effects: writes, renames and removes files; fsyncs files and directories. Every write that
matters goes temp-file → fsync → chmod → rename → fsync(dir), so a power cut leaves either
the old content or the new, never a torn file. No write follows a symlink at its final
component: the temp file is created exclusively (O_EXCL), os.replace swaps a link rather than
writing through it, and appends open with O_NOFOLLOW.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from pathlib import Path
from typing import TypeVar

from pep_agent.errors import InstallError, PepError


def fsync_dir(path: Path) -> None:
    """Make a rename or unlink inside `path` durable."""
    _fsync(path, _DIRECTORY)


_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY
# A file FCC wrote: never through a symlink, never blocking on a FIFO.
_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK


def _fsync(path: Path, flags: int) -> None:
    """fsync whatever `path` opens to with `flags`; a symlink refused by O_NOFOLLOW is skipped
    (its target is not ours to sync)."""
    try:
        fd = os.open(path, flags)
    except OSError as e:
        if e.errno == errno.ELOOP and flags & os.O_NOFOLLOW:
            return
        raise
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_dir(path: Path, mode: int = 0o755) -> None:
    """Create `path` and any missing parents, each new entry made durable by an fsync of its
    parent: on a file system without metadata ordering, an unsynced directory entry (and all
    below it) can vanish in a power cut."""
    missing = []
    walk = path
    while not walk.is_dir():
        missing.append(walk)
        if walk.parent == walk:
            break
        walk = walk.parent
    for new in reversed(missing):
        try:
            new.mkdir(mode=mode)
        except FileExistsError:
            if not new.is_dir():
                raise
        fsync_dir(new.parent)


def sync_tree(top: Path) -> None:
    """fsync every file and directory under `top`, then `top`'s parent; any error raises
    (nothing is skipped: what cannot be opened cannot be vouched for)."""
    def fail(e: OSError) -> None:
        raise e

    for dirpath, _dirs, files in os.walk(top, onerror=fail):
        for name in files:
            _fsync(Path(dirpath, name), _FILE)
        fsync_dir(Path(dirpath))
    if not top.is_dir():
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), str(top))
    fsync_dir(top.parent)


def atomic_write(path: Path, data: bytes, *, mode: int = 0o600) -> None:
    """Replace `path` with `data` atomically and durably; the mode is set before it is visible."""
    make_dir(path.parent)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def rewrite(path: Path, data: bytes, *, mode: int) -> None:
    """Write `data` to `path` in place (created with `mode`, or truncated), durably: the file
    and its directory entry are fsync'd before it returns. Not atomic: for a file that has a
    twin to be written again from, where a torn write is seen and repaired by the next run
    (a temporary file beside it would be a stray entry in a folder another program reads)."""
    make_dir(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC,
                 mode)
    with os.fdopen(fd, "wb") as f:
        os.fchmod(f.fileno(), mode)
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    fsync_dir(path.parent)


def append_line(path: Path, line: str, *, mode: int = 0o600) -> None:
    """Append `line` to `path`, creating it with `mode`; refuses to write through a symlink."""
    make_dir(path.parent)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                     mode)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise InstallError(f"{path} is a symbolic link; refusing to write through it",
                               hint="remove the link and run again") from None
        raise
    with os.fdopen(fd, "a", encoding="utf-8") as f:
        f.write(line)


_OS_HINTS = {
    errno.ENOSPC: "the disk is full: free space and run again",
    errno.EROFS: "the file system is read-only: remount it read-write",
    errno.EACCES: "permission denied: run as root",
    errno.EPERM: "permission denied: run as root",
}

E = TypeVar("E", bound=PepError)


def os_error(kind: type[E], what: str, exc: OSError, *, else_hint: str | None = None) -> E:
    """`kind` (install, the agent's state, an operator's file) for a failed file operation,
    with the hint that matches the OS error (full disk, read-only fs, ...), else `else_hint`
    (else the code's own hint)."""
    reason = exc.strerror or type(exc).__name__
    return kind(f"{what}: {reason}", hint=_OS_HINTS.get(exc.errno or 0, else_hint))


def install_error(what: str, exc: OSError) -> InstallError:
    """An InstallError with a hint that matches the OS error."""
    return os_error(InstallError, what, exc)


def swap_in(src: Path, target: Path) -> None:
    """Rename directory `src` to `target`, which must not exist, durably (`durable_rename`)."""
    if target.exists():
        raise InstallError(f"{target} exists already; refusing to overwrite it")
    make_dir(target.parent)
    try:
        durable_rename(src, target)
    except OSError as e:
        if e.errno == errno.EXDEV:
            raise InstallError(f"{src} and {target} are on different file systems",
                               hint="put the state directory on the same file system as "
                                    "the credentials") from None
        raise install_error(f"moving {src} to {target}", e) from None


def durable_rename(src: Path, dst: Path) -> None:
    """Rename `src` to `dst`, then fsync the directories of both names: the one way an
    identity moves. Until both are synced, a power cut on a file system that does not order
    metadata can undo the rename, or (across directories) leave the item under neither name."""
    os.rename(src, dst)
    fsync_dir(dst.parent)
    if src.parent != dst.parent:
        fsync_dir(src.parent)


def remove(path: Path) -> None:
    """Remove a file, symlink or directory tree if present."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
