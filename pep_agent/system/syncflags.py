"""The synchronous-update inode attributes: set on a folder, cleared from a tree.

Side effects: reads and changes inode flags through the FS_IOC_GETFLAGS / FS_IOC_SETFLAGS
ioctls on folders and regular files (file contents and names are not touched).

FS_DIRSYNC_FL (`chattr +D`) commits every change of a folder's names (create, link, unlink,
rename, mkdir) before the system call returns, as if the folder were fsync'd each time.
FS_SYNC_FL (`chattr +S`) does that too and, on a file, makes every write synchronous, as if it
were opened O_SYNC. On ext4 a new subfolder inherits both, a new file FS_SYNC_FL. tmpfs, and
overlayfs over tmpfs, refuse them (EOPNOTSUPP, ENOTTY on some): there nothing changes.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import struct
from pathlib import Path

log = logging.getLogger("pep_agent")

FS_SYNC_FL = 0x00000008  # include/uapi/linux/fs.h
FS_DIRSYNC_FL = 0x00010000
SYNCHRONOUS = FS_SYNC_FL | FS_DIRSYNC_FL

# _IOR('f', 1, long) and _IOW('f', 2, long) in the asm-generic layout (x86, arm, arm64,
# riscv): direction in bits 30-31, argument size in bits 16-29, type 'f', number. The kernel
# reads and writes an int at the address whatever the encoded size.
_LONG = struct.calcsize("l")
FS_IOC_GETFLAGS = (2 << 30) | (_LONG << 16) | (ord("f") << 8) | 1
FS_IOC_SETFLAGS = (1 << 30) | (_LONG << 16) | (ord("f") << 8) | 2

# What a file system without inode flags (or without these) answers.
_UNSUPPORTED = (errno.EOPNOTSUPP, errno.ENOTTY, errno.ENOSYS, errno.EINVAL)
# Never a FIFO's open that blocks, never through a link.
_OPEN = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC

_said: set[int] = set()  # st_dev of the file systems whose refusal was logged


def _get(fd: int) -> int:
    buf = bytearray(_LONG)
    fcntl.ioctl(fd, FS_IOC_GETFLAGS, buf, True)
    value: int = struct.unpack_from("i", buf)[0]
    return value


def _set(fd: int, flags: int) -> None:
    buf = bytearray(_LONG)
    struct.pack_into("i", buf, 0, flags)
    fcntl.ioctl(fd, FS_IOC_SETFLAGS, buf)


def _refused(fd: int, path: Path, e: OSError) -> None:
    """Log a refusal once per file system: at debug where it has no such attributes."""
    device = os.fstat(fd).st_dev
    if device in _said:
        return
    _said.add(device)
    unsupported = e.errno in _UNSUPPORTED
    log.log(logging.DEBUG if unsupported else logging.WARNING,
            "%s: %s synchronous-update attributes (%s); names and data there are made durable "
            "by fsync only", path, "the file system has no" if unsupported else "cannot change",
            os.strerror(e.errno or 0))


def make_synchronous(folder: Path) -> bool:
    """Give `folder` FS_SYNC_FL and FS_DIRSYNC_FL (or FS_DIRSYNC_FL alone where the file system
    refuses the pair), which what is created in it later inherits. False where neither can be
    set: the attributes only spare the fsyncs that follow anyway, so no error of theirs stops
    a run; it is logged once per file system."""
    fd = os.open(folder, _OPEN | os.O_DIRECTORY)
    try:
        flags = _get(fd)
        try:
            if flags | SYNCHRONOUS != flags:
                _set(fd, flags | SYNCHRONOUS)
        except OSError as e:
            if e.errno not in _UNSUPPORTED:
                raise
            if flags | FS_DIRSYNC_FL != flags:
                _set(fd, flags | FS_DIRSYNC_FL)
        return True
    except OSError as e:
        _refused(fd, folder, e)
        return False
    finally:
        os.close(fd)


def clear_synchronous(top: Path) -> None:
    """Clear both attributes from `top` and every folder below it (each keeps its own copy),
    so that nothing created there later inherits them. Files keep FS_SYNC_FL: clearing it
    costs ext4 a journal commit per file (the attribute makes the change itself synchronous),
    and FCC's files are written O_SYNC by whoever writes them anyway. Links are not followed;
    a folder that vanishes meanwhile or cannot be opened is skipped."""
    folders = [top]
    for dirpath, dirnames, _ in os.walk(top):
        folders.extend(Path(dirpath, name) for name in dirnames)
    for folder in folders:
        try:
            fd = os.open(folder, _OPEN | os.O_DIRECTORY)
        except OSError:
            continue
        try:
            flags = _get(fd)
            if flags & SYNCHRONOUS:
                _set(fd, flags & ~SYNCHRONOUS)
        except OSError as e:
            _refused(fd, folder, e)
            if e.errno in _UNSUPPORTED:
                return  # one file system: no other folder of it has them either
        finally:
            os.close(fd)


def synchronous_flags(path: Path) -> int:
    """The synchronous-update attributes `path` has (0 where the file system has none)."""
    fd = os.open(path, _OPEN)
    try:
        return _get(fd) & SYNCHRONOUS
    except OSError as e:
        if e.errno in _UNSUPPORTED:
            return 0
        raise
    finally:
        os.close(fd)
