import stat
from pathlib import Path

import pytest

from pep_agent.errors import InstallError
from pep_agent.gateway import install
from pep_agent.gateway.backup import Backup
from pep_agent.paths import Paths
from pep_agent.profiles import get_profile

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
