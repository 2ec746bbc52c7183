"""The install of FCC's credentials: staging, the swap, the space check before FCC starts."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import pytest

from pep_agent.errors import InstallError, NoSpaceError
from pep_agent.gateway import install, space
from pep_agent.gateway.backup import Backup
from pep_agent.settings.paths import Paths
from pep_agent.settings.profiles import get_profile
from pep_agent.system import diskspace

LMP = get_profile("lmp")


def _stage(paths: Paths) -> None:
    working = install.staging_dir(paths, LMP) / "pal/WORKING"
    working.mkdir(parents=True)
    (working / "mbed.EndpointName").write_text("SN-1")


def test_swap_then_identity(tmp_path: Path) -> None:
    paths = Paths(tmp_path)
    _stage(paths)
    assert install.credentials_ready(paths, LMP, parsec=False)
    install.install(paths, LMP, False, b'{"serialNumber": "SN-1"}\n')
    mcc = tmp_path / "userdata/mbed/mcc_config"
    ident = tmp_path / "userdata/edge_gw_config/identity.json"
    assert (mcc / "WORKING/mbed.EndpointName").read_text() == "SN-1"
    assert not (install.staging_dir(paths, LMP) / "pal").exists()
    assert stat.S_IMODE(ident.stat().st_mode) == 0o600
    # Rerunning after a crash in the middle is harmless: the swap is already done.
    install.install(paths, LMP, False, b'{"serialNumber": "SN-1"}\n')
    assert install.credentials_ready(paths, LMP, parsec=False)


def test_target_must_not_exist(tmp_path: Path) -> None:
    paths = Paths(tmp_path)
    _stage(paths)
    (tmp_path / "userdata/mbed/mcc_config").mkdir(parents=True)
    with pytest.raises(InstallError, match="exists already"):
        install.install(paths, LMP, False, b"{}")


def test_empty_working_is_refused(tmp_path: Path) -> None:
    paths = Paths(tmp_path)
    (install.staging_dir(paths, LMP) / "pal/WORKING").mkdir(parents=True)
    assert not install.credentials_ready(paths, LMP, parsec=False)
    with pytest.raises(InstallError, match="empty"):
        install.install(paths, LMP, False, b"{}")
    assert not (tmp_path / "userdata/edge_gw_config/identity.json").exists()


def test_parsec_needs_pst(tmp_path: Path) -> None:
    paths = Paths(tmp_path)
    with pytest.raises(InstallError, match="pst"):
        install.install(paths, LMP, True, b"{}")
    (tmp_path / "userdata/mbed/mcc_config/pst").mkdir(parents=True)
    assert install.credentials_ready(paths, LMP, parsec=True)
    install.install(paths, LMP, True, b"{}")
    assert (tmp_path / "userdata/edge_gw_config/identity.json").read_bytes() == b"{}"


def test_previous_identity_kept_until_dropped(tmp_path: Path) -> None:
    paths = Paths(tmp_path)
    old = tmp_path / "userdata/mbed/mcc_config/WORKING"
    old.mkdir(parents=True)
    (tmp_path / "userdata/edge_gw_config").mkdir(parents=True)
    (tmp_path / "userdata/edge_gw_config/identity.json").write_text("old")
    extra = tmp_path / "userdata/etc/maestroConfig.db"
    extra.parent.mkdir(parents=True)
    extra.write_text("db")
    moved = install.clear_identity(paths, get_profile("meta-pelion-edge"))
    assert len(moved) == 2 and not extra.exists()
    assert not (tmp_path / "userdata/mbed/mcc_config").exists()
    backup = Backup(paths, LMP)
    assert backup.held() == list(backup.identity)
    _stage(paths)
    install.install(paths, LMP, False, b"{}")
    backup.discard()
    assert backup.held() == []


def _space(tmp_path: Path, free_kb: int, inodes: int | None = 1000) -> diskspace.Space:
    return diskspace.Space(tmp_path, free_kb * 1024, inodes, 4096)


def test_room_for_fcc_counts_blocks_and_inodes(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    paths = Paths(tmp_path)
    need_kb = space.space_needed(4096) // 1024
    assert need_kb == 264
    for free_kb, inodes in ((need_kb, 1000), (10**6, None)):
        monkeypatch.setattr(diskspace, "free_space", lambda p, f=free_kb, i=inodes: _space(
            tmp_path, f, i))
        space.check_space(paths, LMP)
    monkeypatch.setattr(diskspace, "free_space", lambda p: _space(tmp_path, need_kb - 1))
    with pytest.raises(NoSpaceError, match=f"{need_kb - 1} kB free, FCC and the identity need "
                                           f"about {need_kb} kB; nothing was changed") as e:
        space.check_space(paths, LMP)
    assert e.value.code == 35 and "free at least 1 kB" in e.value.hint
    monkeypatch.setattr(diskspace, "free_space", lambda p: _space(tmp_path, 10**6, 12))
    with pytest.raises(NoSpaceError, match="12 free inodes") as e:
        space.check_space(paths, LMP)
    assert "df -i" in e.value.hint


def test_fccs_storage_error_says_what_the_disk_has(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    paths = Paths(tmp_path)
    line = "[ERR ][esfs]: esfs_copy_file() - pal_fsFclose() failed with pal_status = 0xfc000010"
    monkeypatch.setattr(diskspace, "free_space", lambda p: _space(tmp_path, 40))
    err = space.fcc_storage_error(paths, LMP, line)
    assert isinstance(err, NoSpaceError)
    assert re.search(r"FCC could not store the credentials .*0xfc000010.*40 kB free", err.message)
    # Room enough now: not called a full disk, but still FCC's storage, with the free space.
    monkeypatch.setattr(diskspace, "free_space", lambda p: _space(tmp_path, 10**5))
    err = space.fcc_storage_error(paths, LMP, line)
    assert not isinstance(err, NoSpaceError) and isinstance(err, InstallError)
    assert re.search(r"although .* has 100000 kB free now", err.message)
    assert "read-only, or failing" in err.hint


def test_the_reserve_counts_only_with_cap_sys_resource(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "self").mkdir()
    status = tmp_path / "self" / "status"
    monkeypatch.setattr(diskspace, "HOST_PROC", tmp_path)
    st = os.statvfs(tmp_path)
    for cap_eff, blocks in (("00000000a80425fb", st.f_bavail),  # a unit's root: no reserve
                            ("000001ffffffffff", st.f_bfree)):  # a root shell
        status.write_text(f"Name:\tpep-agent\nCapEff:\t{cap_eff}\n")
        space = diskspace.free_space(tmp_path / "not" / "yet")
        assert space.folder == tmp_path
        # Another writer may change the counts in between: compare in whole blocks, loosely.
        assert abs(space.free_bytes // space.block_size - blocks) < 256
