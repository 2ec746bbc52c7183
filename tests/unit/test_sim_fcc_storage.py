"""The FCC stand-in's storage: the real layout, written as the real FCC writes it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import pep_agent.cli.sim  # noqa: F401  (registers `sim` on the app)
from pep_agent.cli.app import app
from pep_agent.gateway import esfs
from pep_agent.sim import esfs_codec, fcc
from pep_agent.sim.bundle import Item
from pep_agent.sim.fcc_storage import Storage

ITEMS = [
    Item("ConfigParams", "mbed.EndpointName", "GW-1"),
    Item("ConfigParams", "mbed.UseBootstrap", 1),
    Item("Certificates", "mbed.BootstrapServerCACert", b"\x30ca"),
    Item("Certificates", "mbed.BootstrapDeviceCert", b"\x30cert"),
    Item("Keys", "mbed.BootstrapDevicePrivateKey", b"\x30key", "ECCPrivate"),
]


class Opens:
    """os.open calls for writing (path, flags); fsync refused: the real FCC never calls it."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[tuple[str, int]] = []
        real_open = os.open

        def record(path: Any, flags: int, mode: int = 0o777, **kwargs: Any) -> int:
            if flags & (os.O_WRONLY | os.O_RDWR):
                self.calls.append((str(path), flags))
            return real_open(path, flags, mode, **kwargs)

        def no_fsync(fd: int) -> None:
            raise AssertionError("the real FCC never calls fsync")

        monkeypatch.setattr(os, "open", record)
        monkeypatch.setattr(os, "fsync", no_fsync)
        monkeypatch.setattr(os, "fdatasync", no_fsync)


def stored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sync: bool) -> tuple[Path, Opens]:
    opens = Opens(monkeypatch)
    storage = Storage(parsec=False, mcc_config=None, cwd=tmp_path, sync=sync)
    pal = storage.prepare()
    storage.erase()
    storage.write(ITEMS)
    return pal, opens


def test_real_layout_backup_then_working(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pal, opens = stored(tmp_path, monkeypatch, sync=True)
    assert pal == tmp_path / "pal"
    assert (pal / "flashSim").stat().st_size == esfs.FLASHSIM_SIZE
    assert esfs.check_pal(pal) == []
    assert esfs_codec.read_item(pal / "WORKING", "CfgParam_mbed.UseBootstrap") == b"\1\0\0\0"
    key = esfs_codec.read_item(pal / "BACKUP", "PrvKey_mbed.BootstrapDevicePrivateKey")
    assert key == b"\x30key"
    # Certificates unencrypted and without a nonce, everything else encrypted.
    modes = {esfs.parse_header(p.read_bytes()).name: esfs.parse_header(p.read_bytes()).mode
             for p in (pal / "WORKING").iterdir()}
    assert modes["Cert_mbed.BootstrapDeviceCert"] == esfs.MODE_FACTORY == 0x0200
    assert modes["CfgParam_mbed.EndpointName"] == esfs.FACTORY_MODE == 0x0300
    # flashSim holds data, as the real FCC's root of trust (not erased flash).
    assert (pal / "flashSim").read_bytes() != b"\xff" * esfs.FLASHSIM_SIZE
    # No file named after an item: the names are hashed.
    assert not list(pal.rglob("mbed.*"))
    items = [(Path(p).parent.name, Path(p).name) for p, _ in opens.calls if "flashSim" not in p]
    expected = []
    for item in ITEMS:
        name = esfs.file_name(esfs.typed_name(item.group, item.name, item.key_type))
        expected += [("BACKUP", name), ("WORKING", name)]
    assert items == expected
    for path, flags in opens.calls:
        assert flags & os.O_SYNC == os.O_SYNC and flags & os.O_TRUNC, path
    # The real FCC's modes, under the umask.
    umask = os.umask(0o022)
    os.umask(umask)
    assert pal.stat().st_mode & 0o777 == 0o744 & ~umask
    for path in pal.rglob("*"):
        want = 0o777 if path.is_dir() else 0o644
        assert path.stat().st_mode & 0o777 == want & ~umask, path


def test_a_chain_keeps_its_length_as_metadata(tmp_path: Path) -> None:
    storage = Storage(parsec=False, mcc_config=None, cwd=tmp_path)
    pal = storage.prepare()
    storage.erase()
    storage.write([Item("Certificates", "c", b"\x30one", chain=2),
                   Item("Certificates", "c", b"\x30two", prefix="Crt1_")])
    first = (pal / "WORKING" / esfs.file_name("Cert_c")).read_bytes()
    header = esfs.parse_header(first)
    assert (header.name, header.metadata_size) == ("Cert_c", 2)
    assert esfs_codec.decode(first) == ("Cert_c", b"\x30one")
    assert esfs_codec.read_item(pal / "WORKING", "Crt1_c") == b"\x30two"


def test_overwritten_in_place(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pal, _ = stored(tmp_path, monkeypatch, sync=True)
    target = pal / "WORKING" / esfs.file_name("CfgParam_mbed.EndpointName")
    inode = target.stat().st_ino
    Storage(parsec=False, mcc_config=None, cwd=tmp_path).write(
        [Item("ConfigParams", "mbed.EndpointName", "GW-2")])
    assert target.stat().st_ino == inode  # no temporary file renamed over it
    assert esfs_codec.read_item(pal / "WORKING", "CfgParam_mbed.EndpointName") == b"GW-2"


def test_no_sync_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pal, opens = stored(tmp_path, monkeypatch, sync=False)
    assert esfs.check_pal(pal) == []
    assert opens.calls and all(flags & os.O_SYNC != os.O_SYNC for _, flags in opens.calls)


def test_erase_empties_both_copies(tmp_path: Path) -> None:
    storage = Storage(parsec=False, mcc_config=None, cwd=tmp_path)
    pal = storage.prepare()
    storage.erase()
    storage.write(ITEMS)
    storage.erase()
    assert list((pal / "WORKING").iterdir()) == list((pal / "BACKUP").iterdir()) == []
    assert (pal / "flashSim").is_file()


@pytest.mark.parametrize("args, env, sync", [
    ([], {}, True), (["--no-sync"], {}, False), ([], {"PEP_SIM_FCC_NO_SYNC": "1"}, False)])
def test_no_sync_option(monkeypatch: pytest.MonkeyPatch, args: list[str], env: dict[str, str],
                        sync: bool) -> None:
    seen: dict[str, Any] = {}

    def fake_run(**kwargs: Any) -> int:
        seen.update(kwargs)
        return 0

    monkeypatch.setattr(fcc, "run", fake_run)
    monkeypatch.delenv("PEP_SIM_FCC_NO_SYNC", raising=False)
    result = CliRunner().invoke(app, ["sim", "fcc", *args], env=env)
    assert result.exit_code == 0, result.output
    assert seen["sync"] is sync
