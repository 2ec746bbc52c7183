"""A file system as inodes, the recorded operations replayed on it, and the states a power cut
could leave after any prefix of them under four persistence models.

Side effects: only `materialize` writes, into the directory it is given.

Operations name inodes, not paths: they are resolved once on the real history, so that a
state which drops some of them still sends each write to the file it really went to.

The synchronous-update attributes set with FS_IOC_SETFLAGS are followed on that history too,
as ext4 treats them: FS_DIRSYNC_FL (`chattr +D`) and FS_SYNC_FL (`chattr +S`) on a folder are
inherited by the folders created in it, FS_SYNC_FL also by its new files. A namespace
operation in a folder with either (either folder of a rename) is durable when issued, and so
is a write to a file with FS_SYNC_FL (as with O_SYNC), under every model.
"""

from __future__ import annotations

import copy
import hashlib
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.crash.trace import Call, fd_number, fd_path, path_arg, resolve, unhex

NAMESPACE = ("link", "unlink", "rename")
MODELS = ("all-persist", "ext4-ordered", "no-ordering", "one-lost")
FS_SYNC_FL = 0x00000008
FS_DIRSYNC_FL = 0x00010000


@dataclass
class Inode:
    kind: str  # "f", "d" or "l"
    mode: int
    data: bytes = b""
    durable: bytes = b""
    entries: dict[str, int] = field(default_factory=dict)
    target: str = ""


@dataclass
class Op:
    """One durable-state operation; `dirs` are the directories whose fsync makes it durable."""

    kind: str  # link unlink rename trunc write fsync sync chmod
    ino: int = -1
    dirs: tuple[int, ...] = ()
    names: tuple[str, ...] = ()
    offset: int = 0
    data: bytes = b""
    sync: bool = False
    size: int = 0
    fcc: bool = False
    text: str = ""
    synced: bool = False  # a namespace op in a folder with a synchronous-update attribute


def snapshot(root: Path) -> dict[int, Inode]:
    """The inodes of the tree under root as it is now (all of it durable)."""
    inodes: dict[int, Inode] = {}

    def add(path: Path) -> int:
        st = path.lstat()
        ino = len(inodes)
        mode = stat.S_IMODE(st.st_mode)
        if stat.S_ISLNK(st.st_mode):
            inodes[ino] = Inode("l", mode, target=os.readlink(path))
        elif stat.S_ISDIR(st.st_mode):
            inodes[ino] = Inode("d", mode)
            for child in sorted(path.iterdir()):
                inodes[ino].entries[child.name] = add(child)
        else:
            content = path.read_bytes()
            inodes[ino] = Inode("f", mode, content, content)
        return ino

    add(root)
    return inodes


def snapshot_empty() -> dict[int, Inode]:
    """The inodes of an empty root directory."""
    return {0: Inode("d", 0o755)}


class Recorder:
    """Turns traced calls into inode operations by replaying them on the real history."""

    def __init__(self, root: Path, initial: dict[int, Inode], umask: int) -> None:
        self.root = str(root)
        self.inodes = copy.deepcopy(initial)
        self.fds: dict[tuple[int, int], list[int]] = {}  # (pid, fd) -> [inode, pos, append, sync]
        self.umask: dict[int, int] = {}
        self.default_umask = umask
        self.fcc_pids: set[int] = set()
        self.ops: list[Op] = []
        self.born: dict[int, Inode] = {}  # inodes created during the run, as created
        self.flags: dict[int, int] = {}  # synchronous-update attributes of inodes, now

    # --- paths --------------------------------------------------------------------------
    def _rel(self, path: str) -> list[str] | None:
        if path == self.root:
            return []
        if not path.startswith(self.root + "/"):
            return None
        return [p for p in path[len(self.root) + 1:].split("/") if p]

    def _lookup(self, parts: list[str]) -> int | None:
        ino = 0
        for part in parts:
            node = self.inodes[ino]
            if node.kind != "d" or part not in node.entries:
                return None
            ino = node.entries[part]
        return ino

    def _parent(self, path: str) -> tuple[int, str] | None:
        parts = self._rel(path)
        if not parts:
            return None
        parent = self._lookup(parts[:-1])
        if parent is None:
            raise ValueError(f"the parent of {path} is not in the replayed tree")
        return parent, parts[-1]

    # --- operations ---------------------------------------------------------------------
    def _emit(self, op: Op, call: Call) -> None:
        op.fcc = call.pid in self.fcc_pids
        op.text = f"{call.name} {self._show(op)}"
        op.synced = op.kind in NAMESPACE and any(self.flags.get(d) for d in op.dirs)
        apply(self.inodes, op, keep=True)
        self.ops.append(op)

    def _show(self, op: Op) -> str:
        return "/".join(op.names) if op.names else f"inode {op.ino}"

    def _inherit(self, ino: int, parent: int) -> None:
        """ext4: a new folder takes both attributes of its folder, a new file FS_SYNC_FL."""
        mask = FS_SYNC_FL | FS_DIRSYNC_FL if self.inodes[ino].kind == "d" else FS_SYNC_FL
        if self.flags.get(parent, 0) & mask:
            self.flags[ino] = self.flags[parent] & mask

    def _new(self, kind: str, mode: int, pid: int, target: str = "") -> int:
        ino = max(self.inodes) + 1
        self.inodes[ino] = Inode(kind, mode & ~self.umask.get(pid, self.default_umask),
                                 target=target)
        self.born[ino] = copy.deepcopy(self.inodes[ino])
        return ino

    def feed(self, call: Call) -> None:
        name, args, pid = call.name, call.args, call.pid
        if call.result < 0:
            return
        if name in ("clone", "clone3", "fork", "vfork"):
            self.umask[call.result] = self.umask.get(pid, self.default_umask)
        elif name == "umask":
            self.umask[pid] = int(args[0], 8)
        elif name == "execve":
            argv = [unhex(a).decode(errors="replace") for a in split_list(args[1])]
            if any(argv[i:i + 2] == ["sim", "fcc"] for i in range(len(argv))):
                self.fcc_pids.add(pid)
        elif name in ("open", "openat", "creat"):
            self._open(call)
        elif name in ("write", "pwrite64"):
            self._write(call)
        elif name == "lseek":
            entry = self._fd(pid, args[0])
            if entry is not None:
                entry[1] = call.result
        elif name == "ftruncate":
            entry = self._fd(pid, args[0])
            if entry is not None:
                self._emit(Op("trunc", entry[0], size=int(args[1])), call)
        elif name in ("fsync", "fdatasync"):
            entry = self._fd(pid, args[0])
            if entry is not None:
                self._emit(Op("fsync", entry[0]), call)
        elif name == "sync" or (name == "syncfs" and self._rel(fd_path(args[0]) or "") is not None):
            self._emit(Op("sync"), call)
        elif name in ("rename", "renameat", "renameat2"):
            self._rename(call)
        elif name in ("unlink", "unlinkat", "rmdir"):
            path = path_arg(args[0]) if name != "unlinkat" else resolve(args[0], args[1])
            where = self._parent(path)
            if where is not None:
                ino = self.inodes[where[0]].entries[where[1]]
                self._emit(Op("unlink", ino, (where[0],), (where[1],)), call)
        elif name in ("mkdir", "mkdirat"):
            path, mode = ((path_arg(args[0]), args[1]) if name == "mkdir"
                          else (resolve(args[0], args[1]), args[2]))
            where = self._parent(path)
            if where is not None:
                ino = self._new("d", int(mode, 8), pid)
                self._inherit(ino, where[0])
                self._emit(Op("link", ino, (where[0],), (where[1],)), call)
        elif name in ("symlink", "symlinkat"):
            target = path_arg(args[0])
            path = path_arg(args[1]) if name == "symlink" else resolve(args[1], args[2])
            where = self._parent(path)
            if where is not None:
                ino = self._new("l", 0o777, pid, target)
                self._emit(Op("link", ino, (where[0],), (where[1],)), call)
        elif name in ("chmod", "fchmodat"):
            path = path_arg(args[0]) if name == "chmod" else resolve(args[0], args[1])
            parts = self._rel(path)
            ino = self._lookup(parts) if parts is not None else None
            if ino is not None:
                self._emit(Op("chmod", ino, size=int((args[1] if name == "chmod" else args[2]),
                                                     8)), call)
        elif name == "fchmod":
            entry = self._fd(pid, args[0])
            if entry is not None:
                self._emit(Op("chmod", entry[0], size=int(args[1], 8)), call)
        elif name == "ioctl" and len(args) > 2 and args[1] == "FS_IOC_SETFLAGS":
            entry = self._fd(pid, args[0])
            if entry is not None:
                self.flags[entry[0]] = inode_flags(args[2]) & (FS_SYNC_FL | FS_DIRSYNC_FL)

    def _fd(self, pid: int, arg: str) -> list[int] | None:
        """The open file behind a descriptor, if it is one of ours (-y says where it points)."""
        number = fd_number(arg)
        if number is None:
            return None
        path = fd_path(arg)
        if path is None or self._rel(path) is None:
            self.fds.pop((pid, number), None)
            return None
        return self.fds.get((pid, number))

    def _open(self, call: Call) -> None:
        args = call.args
        if call.name == "creat":
            path, flags, mode = path_arg(args[0]), "O_CREAT|O_WRONLY|O_TRUNC", args[1]
        elif call.name == "open":
            path, flags = path_arg(args[0]), args[1]
            mode = args[2] if len(args) > 2 else "0"
        else:
            path, flags = resolve(args[0], args[1]), args[2]
            mode = args[3] if len(args) > 3 else "0"
        if call.result_path is not None:
            path = unhex(call.result_path).decode(errors="surrogateescape")
        parts = self._rel(path)
        key = (call.pid, call.result)
        self.fds.pop(key, None)
        if parts is None:
            return
        flagset = set(flags.split("|"))
        ino = self._lookup(parts)
        if ino is None:
            where = self._parent(path)
            assert where is not None and "O_CREAT" in flagset, call.text
            ino = self._new("f", int(mode, 8), call.pid)
            self._inherit(ino, where[0])
            self._emit(Op("link", ino, (where[0],), (where[1],)), call)
        elif "O_TRUNC" in flagset and self.inodes[ino].kind == "f":
            self._emit(Op("trunc", ino, size=0), call)
        sync = bool(flagset & {"O_SYNC", "O_DSYNC"})
        self.fds[key] = [ino, 0, int("O_APPEND" in flagset), int(sync)]

    def _write(self, call: Call) -> None:
        entry = self._fd(call.pid, call.args[0])
        if entry is None or call.result == 0:
            return
        ino, pos, append, sync = entry
        data = unhex(call.args[1])[: call.result]
        if call.name == "pwrite64":
            offset = int(call.args[3])
        else:
            offset = len(self.inodes[ino].data) if append else pos
            entry[1] = offset + len(data)
        sync = sync or self.flags.get(ino, 0) & FS_SYNC_FL
        self._emit(Op("write", ino, offset=offset, data=data, sync=bool(sync)), call)

    def _rename(self, call: Call) -> None:
        args = call.args
        if call.name == "rename":
            src, dst = path_arg(args[0]), path_arg(args[1])
        else:
            src, dst = resolve(args[0], args[1]), resolve(args[2], args[3])
            if call.name == "renameat2" and "RENAME_EXCHANGE" in args[4]:
                raise ValueError(f"RENAME_EXCHANGE is not modelled: {call.text}")
        a, b = self._parent(src), self._parent(dst)
        if a is None or b is None:
            if (a is None) != (b is None):
                raise ValueError(f"a rename across the root is not modelled: {call.text}")
            return
        ino = self.inodes[a[0]].entries[a[1]]
        self._emit(Op("rename", ino, (a[0], b[0]), (a[1], b[1])), call)


def inode_flags(arg: str) -> int:
    """The flags of FS_IOC_SETFLAGS's argument as strace prints it: `[FS_DIRSYNC_FL|...]`
    by name, or a number."""
    names = {"FS_SYNC_FL": FS_SYNC_FL, "FS_DIRSYNC_FL": FS_DIRSYNC_FL}
    flags = 0
    for part in arg.strip("[]").split("|"):
        part = part.strip()
        if part in names:
            flags |= names[part]
        elif part[:1].isdigit():
            flags |= int(part, 0)
    return flags


def split_list(arg: str) -> list[str]:
    """The quoted strings of an strace array argument such as argv."""
    out, i = [], 0
    while True:
        start = arg.find('"', i)
        if start < 0:
            return out
        end = arg.find('"', start + 1)
        out.append(arg[start + 1:end])
        i = end + 1


def apply(inodes: dict[int, Inode], op: Op, keep: bool) -> None:
    """Apply op; namespace ops only when keep (a lost one leaves the names as they were)."""
    if op.kind in NAMESPACE:
        if not keep:
            return
        if op.kind == "link":
            inodes[op.dirs[0]].entries[op.names[0]] = op.ino
        elif op.kind == "unlink":
            entries = inodes[op.dirs[0]].entries
            if entries.get(op.names[0]) == op.ino:
                del entries[op.names[0]]
        else:
            src = inodes[op.dirs[0]].entries
            if src.get(op.names[0]) == op.ino:
                del src[op.names[0]]
            inodes[op.dirs[1]].entries[op.names[1]] = op.ino
        return
    if op.kind == "sync":
        for node in inodes.values():
            node.durable = node.data
        return
    node = inodes[op.ino]
    if op.kind == "trunc":
        node.data, node.durable = node.data[: op.size], node.durable[: op.size]
    elif op.kind == "write":
        data = node.data.ljust(op.offset, b"\0")
        node.data = data[: op.offset] + op.data + data[op.offset + len(op.data):]
        if op.sync:
            node.durable = node.data
    elif op.kind == "fsync":
        node.durable = node.data
    elif op.kind == "chmod":
        node.mode = op.size


def durable_at(ops: list[Op]) -> list[int]:
    """For each namespace op, the index of the op after which it is durable without metadata
    ordering (an fsync of every directory it changed, or a sync; itself when issued in a
    folder with a synchronous-update attribute); len(ops) if never."""
    never = len(ops)
    result = [never] * len(ops)
    for j, op in enumerate(ops):
        if op.kind not in NAMESPACE:
            continue
        if op.synced:
            result[j] = j
            continue
        waiting = set(op.dirs)
        for i in range(j + 1, len(ops)):
            later = ops[i]
            if later.kind == "sync":
                result[j] = i
                break
            if later.kind == "fsync" and later.ino in waiting:
                waiting.discard(later.ino)
                if not waiting:
                    result[j] = i
                    break
    return result


Tree = dict[str, tuple[str, int, bytes]]  # relative path -> (kind, mode, content or target)


def build(initial: dict[int, Inode], ops: list[Op], k: int, keep: Callable[[int], bool],
          full_data: bool) -> Tree:
    """The tree after ops[:k], with the namespace ops keep() rejects lost, and file data as
    issued (full_data) or only as of its last fsync, O_SYNC write or sync."""
    inodes = {n: Inode(i.kind, i.mode, i.data, i.durable, dict(i.entries), i.target)
              for n, i in initial.items()}
    for i in range(k):
        apply(inodes, ops[i], keep(i))
    tree: Tree = {}

    def walk(ino: int, rel: str, seen: frozenset[int]) -> None:
        for name, child in sorted(inodes[ino].entries.items()):
            node, path = inodes[child], f"{rel}{name}"
            if node.kind == "d":
                if child in seen:
                    continue  # cannot happen on a real disk; guards against a replay loop
                tree[path] = ("d", node.mode, b"")
                walk(child, path + "/", seen | {child})
            elif node.kind == "l":
                tree[path] = ("l", node.mode, node.target.encode())
            else:
                tree[path] = ("f", node.mode, node.data if full_data else node.durable)

    walk(0, "", frozenset({0}))
    return tree


@dataclass
class CrashState:
    model: str
    point: int  # how many ops had been issued
    lost: int | None  # the op lost (model one-lost)
    tree: Tree
    record: bool  # whether the server holds the deployed record at that point


def crash_states(initial: dict[int, Inode], ops: list[Op], record_from: int,
                 ignore: Callable[[str], bool]) -> Iterator[tuple[str, CrashState]]:
    """Every (key, state) under the four models at every point; keys repeat for equal states.

    record_from: the first point at which the server holds its deployed record.
    ignore(path): paths a reboot empties (e.g. /run), left out of the states.
    """
    durable = durable_at(ops)
    persistence = {i + 1 for i, op in enumerate(ops)
                   if op.kind in ("fsync", "sync") or (op.kind == "write" and op.sync)}
    persistence.add(len(ops))
    for k in range(len(ops) + 1):
        variants: list[tuple[str, int | None, Callable[[int], bool], bool]] = [
            ("all-persist", None, lambda i: True, True),
            ("ext4-ordered", None, lambda i: True, False),
            ("no-ordering", None, lambda i, k=k: durable[i] < k, False),
        ]
        if k in persistence:
            for j in range(k):
                if ops[j].kind in NAMESPACE and durable[j] >= k:
                    variants.append(("one-lost", j, lambda i, j=j: i != j, True))
        for model, lost, keep, full in variants:
            tree = {p: v for p, v in build(initial, ops, k, keep, full).items() if not ignore(p)}
            state = CrashState(model, k, lost, tree, k >= record_from)
            yield state_key(state), state


def state_key(state: CrashState) -> str:
    h = hashlib.sha256(b"record" if state.record else b"none")
    for path, (kind, mode, content) in sorted(state.tree.items()):
        h.update(f"\0{path}\0{kind}\0{mode:o}\0".encode())
        h.update(hashlib.sha256(content).digest())
    return h.hexdigest()


def materialize(tree: Tree, root: Path) -> None:
    """Write tree under root (which must not exist yet)."""
    root.mkdir(parents=True)
    for path, (kind, mode, content) in sorted(tree.items()):
        target = root / path
        if kind == "d":
            target.mkdir()
        elif kind == "l":
            target.symlink_to(content.decode())
            continue
        else:
            target.write_bytes(content)
        target.chmod(mode)
    for path, (kind, mode, _) in sorted(tree.items(), reverse=True):
        if kind == "d":
            (root / path).chmod(mode)
