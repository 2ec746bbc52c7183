"""The synchronous-update attributes on real file systems: set on a folder and inherited (ext4,
where the temporary folder usually is), cleared from a whole tree, and refused by tmpfs."""

from __future__ import annotations

import errno
import logging
import os
import tempfile
from pathlib import Path

import pytest

from pep_agent.system import syncflags
from pep_agent.system.syncflags import (
    FS_DIRSYNC_FL,
    FS_SYNC_FL,
    SYNCHRONOUS,
    clear_synchronous,
    make_synchronous,
    synchronous_flags,
)


def _supported(folder: Path) -> bool:
    probe = folder / "probe"
    probe.mkdir()
    try:
        return make_synchronous(probe)
    finally:
        probe.rmdir()


@pytest.fixture
def ext4(tmp_path: Path) -> Path:
    if not _supported(tmp_path):
        pytest.skip("the temporary folder's file system has no synchronous-update attributes")
    return tmp_path


def _tmpfs() -> Path:
    shm = Path("/dev/shm")
    if not shm.is_dir() or not os.access(shm, os.W_OK):
        pytest.skip("no writable /dev/shm (tmpfs) here")
    return shm


def test_set_on_a_folder_and_inherited_by_what_is_created_in_it(ext4: Path) -> None:
    top = ext4 / "mbed"
    top.mkdir()
    assert make_synchronous(top) is True
    assert synchronous_flags(top) == SYNCHRONOUS
    (top / "staging" / "pal").mkdir(parents=True)
    (top / "staging" / "pal" / "item").write_bytes(b"x")
    assert synchronous_flags(top / "staging" / "pal") == SYNCHRONOUS
    assert synchronous_flags(top / "staging" / "pal" / "item") == FS_SYNC_FL
    assert make_synchronous(top) is True  # already set: nothing to do, still True


def test_cleared_from_every_folder_of_the_tree(ext4: Path) -> None:
    top = ext4 / "mbed"
    top.mkdir()
    make_synchronous(top)
    for sub in ("mcc_config/BACKUP", "mcc_config/WORKING", "other"):
        (top / sub).mkdir(parents=True)
        (top / sub / "f").write_bytes(b"x")
    os.symlink("/", top / "mcc_config" / "link")  # never followed
    os.mkfifo(top / "other" / "fifo")  # never opened
    clear_synchronous(top)
    assert [synchronous_flags(d) for d in (top, *top.rglob("*"))
            if d.is_dir() and not d.is_symlink()] == [0] * 5
    # Files keep theirs (clearing costs a journal commit each; they are written O_SYNC).
    assert {synchronous_flags(f) for f in top.rglob("f")} == {FS_SYNC_FL}
    # A folder made afterwards inherits nothing.
    (top / "mcc_config" / "later").mkdir()
    assert synchronous_flags(top / "mcc_config" / "later") == 0


def test_a_file_system_without_them_is_left_alone_and_said_once(
        caplog: pytest.LogCaptureFixture) -> None:
    shm = _tmpfs()
    folders = [Path(tempfile.mkdtemp(dir=shm)) for _ in range(2)]
    syncflags._said.discard(os.stat(shm).st_dev)
    try:
        with caplog.at_level(logging.DEBUG, logger="pep_agent"):
            assert make_synchronous(folders[0]) is False
            assert make_synchronous(folders[1]) is False
            clear_synchronous(folders[0])
        said = [r for r in caplog.records if "synchronous-update" in r.getMessage()]
        assert len(said) == 1 and said[0].levelno == logging.DEBUG
        assert "the file system has no" in said[0].getMessage()
    finally:
        for folder in folders:
            folder.rmdir()


def test_directory_sync_alone_where_the_pair_is_refused(ext4: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    real_set = syncflags._set

    def no_sync_flag(fd: int, flags: int) -> None:
        if flags & FS_SYNC_FL:
            raise OSError(errno.EOPNOTSUPP, os.strerror(errno.EOPNOTSUPP))
        real_set(fd, flags)

    monkeypatch.setattr(syncflags, "_set", no_sync_flag)
    folder = ext4 / "d"
    folder.mkdir()
    assert make_synchronous(folder) is True
    assert synchronous_flags(folder) == FS_DIRSYNC_FL
