"""Reads an `strace -f -y -xx` log into the durable-state operations done under one root.

No side effects: it parses text. The log must come from `strace -f -y -xx -s BIG -qq -o FILE`
with the syscalls in TRACED; with -xx every string and every -y path is printed as \\xNN bytes,
which makes the arguments unambiguous to split.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

TRACED = ("open", "openat", "creat", "write", "pwrite64", "lseek", "ftruncate", "rename",
          "renameat", "renameat2", "unlink", "unlinkat", "mkdir", "mkdirat", "rmdir", "fsync",
          "fdatasync", "sync", "syncfs", "symlink", "symlinkat", "chmod", "fchmod", "fchmodat",
          "umask", "execve", "clone", "clone3", "fork", "vfork", "ioctl")
# What -y prints after a path the kernel already unlinked.
_DELETED = " (deleted)"
_LINE = re.compile(r"^(\d+)\s+(.*)$")
_CALL = re.compile(r"^([a-z0-9_]+)\((.*)\)\s+=\s+(-?\d+|\?)(?:<([^>]*)>)?(.*)$")
_HEX = re.compile(r"\\x([0-9a-f]{2})")


@dataclass
class Call:
    """One finished system call: its name, arguments (split), return value, pid and text."""

    pid: int
    name: str
    args: list[str]
    result: int
    result_path: str | None
    injected: bool
    text: str


def unhex(text: str) -> bytes:
    """Bytes of a -xx quoted string or path (without its quotes or brackets)."""
    return bytes(int(h, 16) for h in _HEX.findall(text))


def split_args(text: str) -> list[str]:
    """Top-level comma-separated arguments; commas inside quotes, <>, [] and {} stay."""
    args, depth, quoted, start = [], 0, False, 0
    i = 0
    while i < len(text):
        c = text[i]
        if quoted:
            if c == "\\":
                i += 1
            elif c == '"':
                quoted = False
        elif c == '"':
            quoted = True
        elif c in "<[{":
            depth += 1
        elif c in ">]}":
            depth -= 1
        elif c == "," and depth == 0:
            args.append(text[start:i].strip())
            start = i + 1
        i += 1
    tail = text[start:].strip()
    if tail:
        args.append(tail)
    return args


def parse(log: str) -> list[Call]:
    """The finished calls of a log, in order of completion; unfinished/resumed pairs joined."""
    pending: dict[int, str] = {}
    calls = []
    for raw in log.splitlines():
        m = _LINE.match(raw)
        if not m:
            continue
        pid, rest = int(m.group(1)), m.group(2)
        if rest.endswith("<unfinished ...>"):
            pending[pid] = rest[: -len("<unfinished ...>")].rstrip()
            continue
        if rest.startswith("<... "):
            head = pending.pop(pid, None)
            if head is None:
                continue
            rest = head + rest.split(" resumed>", 1)[1]
        if rest.startswith(("+++", "---")):
            continue
        c = _CALL.match(rest)
        if not c or c.group(3) == "?":
            continue
        calls.append(Call(pid, c.group(1), split_args(c.group(2)), int(c.group(3)),
                          c.group(4), "(INJECTED)" in c.group(5), raw))
    return calls


def path_arg(arg: str) -> str:
    """A quoted path argument, decoded."""
    return unhex(arg).decode(errors="surrogateescape")


def fd_path(arg: str) -> str | None:
    """The path -y printed for a file descriptor argument (`3<...>`, `AT_FDCWD<...>`)."""
    if "<" not in arg:
        return None
    path = unhex(arg[arg.index("<") + 1: arg.rindex(">")]).decode(errors="surrogateescape")
    return path[: -len(_DELETED)] if path.endswith(_DELETED) else path


def fd_number(arg: str) -> int | None:
    head = arg.split("<", 1)[0]
    return int(head) if head.isdigit() else None


def resolve(dirfd: str, arg: str) -> str:
    """An *at call's path: absolute as given, else below its directory descriptor's path."""
    path = path_arg(arg)
    if path.startswith("/"):
        return path
    base = fd_path(dirfd)
    if base is None:
        raise ValueError(f"relative path without a known directory: {arg}")
    return str(Path(base) / path)
