"""The crash explorer's model (tests/crash): an strace log read into inode operations, and the
states each persistence model gives after a prefix of them."""

from __future__ import annotations

from pathlib import Path

from tests.crash import fsmodel, trace

ROOT = "/r"


def h(text: str) -> str:
    """A string as strace -xx prints it."""
    return "".join(f"\\x{b:02x}" for b in text.encode())


def fd(n: int, path: str) -> str:
    return f"{n}<{h(path)}>"


# mkdir d; create d/f, write, fsync it; rename d/f -> d/g; fsync d; then sync.
LOG = "\n".join([
    f'7 mkdir("{h("/r/d")}", 0755) = 0',
    f'7 openat(AT_FDCWD<{h("/")}>, "{h("/r/d/f")}", O_WRONLY|O_CREAT|O_TRUNC|O_CLOEXEC, 0644)'
    f' = {fd(3, "/r/d/f")}',
    f'7 write({fd(3, "/r/d/f")}, "{h("hello")}", 5 <unfinished ...>',
    f'8 write({fd(1, "pipe:[1]")}, "{h("noise")}", 5) = 5',
    "7 <... write resumed>) = 5",
    f'7 fsync({fd(3, "/r/d/f")}) = 0',
    f'7 rename("{h("/r/d/f")}", "{h("/r/d/g")}") = 0',
    f'7 openat(AT_FDCWD<{h("/")}>, "{h("/r/d")}", O_RDONLY|O_DIRECTORY) = {fd(4, "/r/d")}',
    f'7 fsync({fd(4, "/r/d")}) = 0',
    f'7 unlink("{h("/r/elsewhere")}") = -1 ENOENT (No such file or directory)',
    "7 sync() = 0",
])


def _recorded() -> tuple[dict[int, fsmodel.Inode], list[fsmodel.Op]]:
    rec = fsmodel.Recorder(Path(ROOT), fsmodel.snapshot_empty(), 0o022)
    for call in trace.parse(LOG):
        rec.feed(call)
    return {**fsmodel.snapshot_empty(), **rec.born}, rec.ops


def _state(model: str, point: int, lost: int | None = None) -> fsmodel.Tree:
    initial, ops = _recorded()
    durable = fsmodel.durable_at(ops)
    keep = {"all-persist": lambda i: True, "ext4-ordered": lambda i: True,
            "no-ordering": lambda i: durable[i] < point, "one-lost": lambda i: i != lost}[model]
    return fsmodel.build(initial, ops, point, keep, model in ("all-persist", "one-lost"))


def test_the_log_becomes_inode_operations() -> None:
    _, ops = _recorded()
    assert [op.kind for op in ops] == ["link", "link", "write", "fsync", "rename", "fsync",
                                       "sync"]
    assert ops[2].data == b"hello" and ops[2].offset == 0
    assert ops[4].names == ("f", "g")


def test_everything_issued_persists() -> None:
    assert _state("all-persist", 3) == {"d": ("d", 0o755, b""), "d/f": ("f", 0o644, b"hello")}


def test_ext4_ordered_keeps_names_but_not_unsynced_data() -> None:
    assert _state("ext4-ordered", 3)["d/f"][2] == b""
    assert _state("ext4-ordered", 4)["d/f"][2] == b"hello"


def test_without_ordering_a_name_needs_its_directory_synced() -> None:
    # d's own entry lives in the root, which nobody fsyncs: only sync() keeps it.
    assert _state("no-ordering", 6) == {}
    assert _state("no-ordering", 7) == {"d": ("d", 0o755, b""), "d/g": ("f", 0o644, b"hello")}
    _, ops = _recorded()
    assert fsmodel.durable_at(ops)[:2] == [6, 5]


def test_one_lost_operation() -> None:
    assert _state("one-lost", 6, lost=4) == {"d": ("d", 0o755, b""),
                                             "d/f": ("f", 0o644, b"hello")}
    assert _state("one-lost", 6, lost=0) == {}


def test_states_are_deduplicated_and_reboot_paths_ignored(tmp_path: Path) -> None:
    initial, ops = _recorded()
    pairs = list(fsmodel.crash_states(initial, ops, record_from=7, ignore=lambda p: False))
    keys = {k for k, _ in pairs}
    assert len(keys) < len(pairs)
    last = next(s for _, s in pairs if s.point == len(ops) and s.model == "all-persist")
    assert last.record
    fsmodel.materialize(last.tree, tmp_path / "gw")
    assert (tmp_path / "gw/d/g").read_bytes() == b"hello"


# The staging folder gets both synchronous-update attributes; FCC then makes a folder and a
# file in it (no O_SYNC, no fsync); the attributes are cleared; one more name is made there.
FLAGGED = "\n".join([
    f'7 mkdir("{h("/r/s")}", 0700) = 0',
    f'7 openat(AT_FDCWD<{h("/")}>, "{h("/r/s")}", O_RDONLY|O_NONBLOCK|O_CLOEXEC|O_DIRECTORY)'
    f' = {fd(3, "/r/s")}',
    f'7 ioctl({fd(3, "/r/s")}, FS_IOC_SETFLAGS, [FS_SYNC_FL|FS_DIRSYNC_FL|FS_EXTENT_FL]) = 0',
    f'9 mkdir("{h("/r/s/pal")}", 0755) = 0',
    f'9 openat(AT_FDCWD<{h("/")}>, "{h("/r/s/pal/k")}", O_WRONLY|O_CREAT|O_TRUNC, 0600)'
    f' = {fd(4, "/r/s/pal/k")}',
    f'9 write({fd(4, "/r/s/pal/k")}, "{h("key")}", 3) = 3',
    f'7 ioctl({fd(3, "/r/s")}, FS_IOC_SETFLAGS, [FS_EXTENT_FL]) = 0',
    f'7 ioctl({fd(3, "/r/s")}, FS_IOC_SETFLAGS, [0x8]) = 0',
    f'7 mkdir("{h("/r/s/late")}", 0700) = 0',
    f'7 ioctl({fd(3, "/r/s")}, FS_IOC_SETFLAGS, [FS_EXTENT_FL]) = 0',
    f'7 mkdir("{h("/r/s/later")}", 0700) = 0',
])


def test_names_and_writes_under_the_synchronous_attributes_are_durable_when_issued() -> None:
    rec = fsmodel.Recorder(Path(ROOT), fsmodel.snapshot_empty(), 0o022)
    for call in trace.parse(FLAGGED):
        rec.feed(call)
    initial, ops = {**fsmodel.snapshot_empty(), **rec.born}, rec.ops
    assert [op.kind for op in ops] == ["link", "link", "link", "write", "link", "link"]
    durable = fsmodel.durable_at(ops)
    # s itself was made before the attributes, in the root: durable only when synced (never).
    assert durable[0] == len(ops)
    # pal (an inherited folder), k in it, and "late" under FS_SYNC_FL given as a number.
    assert durable[1:3] == [1, 2] and durable[4] == 4
    assert ops[3].sync  # k inherited FS_SYNC_FL: its write is synchronous
    assert durable[5] == len(ops)  # after the attributes were cleared
    # No ordering at all: s is lost with all below it; with s kept, what FCC made is there,
    # data included.
    point = 4

    def keep(i: int) -> bool:
        return i == 0 or durable[i] < point

    tree = fsmodel.build(initial, ops, point, keep, full_data=False)
    assert tree["s/pal/k"] == ("f", 0o600, b"key")
