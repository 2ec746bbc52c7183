"""FCC's storage format: hashed names, the ESFS header, and the checks of a pal folder."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from pep_agent.gateway import esfs
from pep_agent.sim import esfs_codec
from tests.fakes import NONCE, write_pal


@pytest.fixture()
def pal(tmp_path: Path) -> Path:
    items = {typed: b"secret-" + typed.encode() for typed in esfs.REQUIRED}
    items["CfgParam_mbed.UseBootstrap"] = b"1"
    write_pal(tmp_path / "pal", items)
    return tmp_path / "pal"


def test_file_name_is_the_one_fcc_computes() -> None:
    assert esfs.file_name("CfgParam_mbed.EndpointName") == "sB1fRsia"
    names = {esfs.file_name(typed) for typed in esfs.REQUIRED}
    assert len(names) == len(esfs.REQUIRED)
    for name in names:
        assert len(name) == 8 and set(name) <= set(
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789#_")


def test_typed_names_carry_kcm_prefixes() -> None:
    assert esfs.typed_name("ConfigParams", "mbed.EndpointName") == "CfgParam_mbed.EndpointName"
    assert esfs.typed_name("Certificates", "mbed.BootstrapDeviceCert") == \
        "Cert_mbed.BootstrapDeviceCert"
    assert esfs.typed_name("Keys", "mbed.BootstrapDevicePrivateKey", "ECCPrivate") == \
        "PrvKey_mbed.BootstrapDevicePrivateKey"
    assert esfs.typed_name("Keys", "k", "ECCPublic") == "PubKey_k"


def test_encode_has_the_real_header_and_sizes() -> None:
    typed = "CfgParam_mbed.UseBootstrap"
    blob = esfs_codec.encode(typed, b"abc", NONCE)
    assert struct.unpack_from("<HHH", blob) == (1, 0x0300, len(typed))
    assert blob[6:6 + len(typed)] == typed.encode()
    assert blob[6 + len(typed):14 + len(typed)] == NONCE
    assert len(blob) == 6 + len(typed) + 8 + 2 + 3 + 16
    assert b"abc" not in blob[6 + len(typed):]  # the stand-in still scrambles the data
    header = esfs.parse_header(blob)
    assert (header.version, header.mode, header.name, header.nonce) == (1, 0x0300, typed, NONCE)
    assert header.data_size(len(blob)) == 3
    assert esfs_codec.decode(blob) == (typed, b"abc")


def test_parse_header_reads_metadata_entries() -> None:
    name = b"Cert_x"
    meta = struct.pack("<HHH", 1, 4, 0)
    blob = struct.pack("<HHH", 1, 0x0300, len(name)) + name + NONCE + struct.pack("<H", 1) + \
        meta + b"\0" * 4 + b"data" + b"\0" * 16
    header = esfs.parse_header(blob)
    assert header.metadata_size == 4 and header.data_size(len(blob)) == 4
    with pytest.raises(esfs.EsfsError, match="do not fit"):
        esfs.parse_header(blob[:-10])


@pytest.mark.parametrize("blob, message", [
    (b"", "shorter than the ESFS header"),
    (b"\x01\x00\x00", "shorter than the ESFS header"),
    (struct.pack("<HHH", 2, 0x0300, 1) + b"x" * 40, "version 2"),
    (struct.pack("<HHH", 1, 0x0300, 500) + b"x" * 40, "name length 500"),
    (struct.pack("<HHH", 1, 0x0300, 1) + b"x" + NONCE + b"\0\0" + b"short", "do not fit"),
])
def test_parse_header_refuses_what_fcc_refuses(blob: bytes, message: str) -> None:
    with pytest.raises(esfs.EsfsError, match=message):
        esfs.parse_header(blob)


def test_decode_refuses_a_changed_file() -> None:
    blob = bytearray(esfs_codec.encode("CfgParam_a", b"value", NONCE))
    blob[-20] ^= 1
    with pytest.raises(esfs.EsfsError, match="trailer"):
        esfs_codec.decode(bytes(blob))


def test_complete_pal_has_no_problems(pal: Path) -> None:
    assert esfs.check_pal(pal) == []
    assert esfs_codec.read_item(pal / "WORKING", "CfgParam_mbed.EndpointName") == \
        b"secret-CfgParam_mbed.EndpointName"


def test_every_problem_is_named_without_contents(pal: Path) -> None:
    endpoint = esfs.file_name("CfgParam_mbed.EndpointName")
    key = esfs.file_name("PrvKey_mbed.BootstrapDevicePrivateKey")
    ca = esfs.file_name("Cert_mbed.BootstrapServerCACert")
    (pal / "flashSim").unlink()
    (pal / "BACKUP" / endpoint).unlink()               # only in WORKING
    (pal / "WORKING" / key).write_bytes(b"")            # crash while FCC wrote it
    cert = pal / "WORKING" / esfs.file_name("Cert_mbed.BootstrapDeviceCert")
    cert.write_bytes(cert.read_bytes()[:30])            # truncated
    (pal / "WORKING" / ca).rename(pal / "WORKING" / "AAAAAAAA")  # name does not match
    problems = esfs.check_pal(pal)
    assert "flashSim: missing" in problems
    assert f"WORKING/{endpoint}: not in BACKUP" in problems
    assert f"WORKING/{key}: empty" in problems
    assert any(p.startswith(f"WORKING/{cert.name}: ") and "fit" in p for p in problems)
    assert "WORKING/AAAAAAAA: the item name in its header does not hash to its file name" \
        in problems
    assert f"BACKUP/{ca}: not in WORKING" in problems
    for typed in ("PrvKey_mbed.BootstrapDevicePrivateKey", "Cert_mbed.BootstrapDeviceCert",
                  "Cert_mbed.BootstrapServerCACert"):
        assert f"WORKING: {typed} ({esfs.file_name(typed)}) missing" in problems
    assert not any("secret" in p for p in problems)


def test_missing_folders(tmp_path: Path) -> None:
    assert esfs.check_pal(tmp_path / "nope") == ["nope: not a folder"]
    (tmp_path / "pal").mkdir()
    problems = esfs.check_pal(tmp_path / "pal")
    assert problems[:3] == ["flashSim: missing", "WORKING: missing", "BACKUP: missing"]
    assert len(problems) == 3 + len(esfs.REQUIRED)


def test_check_parsec(tmp_path: Path) -> None:
    assert esfs.check_parsec(tmp_path) == ["its: missing", "pst: missing"]
    (tmp_path / "its").mkdir()
    (tmp_path / "pst").mkdir()
    (tmp_path / "its" / "key").write_bytes(b"k")
    (tmp_path / "pst" / "cfg").write_bytes(b"")
    assert esfs.check_parsec(tmp_path) == ["pst/cfg: empty"]
    (tmp_path / "pst" / "cfg").write_bytes(b"c")
    assert esfs.check_parsec(tmp_path) == []


def test_a_lost_or_broken_copy_is_repaired_from_its_sound_twin(pal: Path) -> None:
    endpoint = esfs.file_name("CfgParam_mbed.EndpointName")
    key = esfs.file_name("PrvKey_mbed.BootstrapDevicePrivateKey")
    cert = esfs.file_name("Cert_mbed.BootstrapDeviceCert")
    ca = esfs.file_name("Cert_mbed.BootstrapServerCACert")
    (pal / "BACKUP" / endpoint).unlink()                # lost at a cut: WORKING has it
    (pal / "WORKING" / key).write_bytes(b"")             # empty: BACKUP has it
    (pal / "WORKING" / cert).write_bytes((pal / "WORKING" / cert).read_bytes()[:5])  # cut
    for folder in ("BACKUP", "WORKING"):                  # both broken: nothing to copy from
        (pal / folder / ca).write_bytes(b"")
    boot = esfs.file_name("CfgParam_mbed.UseBootstrap")
    blob = (pal / "BACKUP" / boot).read_bytes()
    (pal / "BACKUP" / boot).write_bytes(blob + b"more")  # longer: cut short is WORKING's
    assert set(esfs.copies_to_repair(pal)) == {
        (pal / "BACKUP" / cert, pal / "WORKING" / cert),
        (pal / "BACKUP" / key, pal / "WORKING" / key),
        (pal / "WORKING" / endpoint, pal / "BACKUP" / endpoint),
        (pal / "BACKUP" / boot, pal / "WORKING" / boot),
    }
    # Two sound copies that differ otherwise: neither is known to be right, none is touched.
    (pal / "BACKUP" / boot).write_bytes(blob[:-1] + bytes([blob[-1] ^ 1]))
    assert (pal / "BACKUP" / boot, pal / "WORKING" / boot) not in esfs.copies_to_repair(pal)


def test_nothing_is_repaired_through_a_link_or_over_a_folder(pal: Path, tmp_path: Path) -> None:
    endpoint = esfs.file_name("CfgParam_mbed.EndpointName")
    key = esfs.file_name("PrvKey_mbed.BootstrapDevicePrivateKey")
    (pal / "BACKUP" / endpoint).unlink()
    (pal / "BACKUP" / endpoint).symlink_to(tmp_path / "elsewhere")
    (pal / "BACKUP" / key).unlink()
    (pal / "BACKUP" / key).mkdir()
    assert esfs.copies_to_repair(pal) == []
    (pal / "BACKUP").rename(tmp_path / "real-backup")
    (pal / "BACKUP").symlink_to(tmp_path / "real-backup")
    assert esfs.copies_to_repair(pal) == []
    assert esfs.copies_to_repair(tmp_path / "no-pal") == []


def test_an_item_the_running_client_wrote_lives_in_working_alone(pal: Path) -> None:
    """ESFS gives only factory items a BACKUP copy (esfs_create/esfs_close): what edge-core's
    client stores while it runs (LwM2M credentials after bootstrap, ...) is in WORKING alone.
    That is a sound, installed store: not a problem, and never copied into BACKUP."""
    typed = "Cert_mbed.LwM2MServerCACert"
    runtime = esfs_codec.encode(typed, b"written by the client", NONCE, mode=esfs.MODE_ENCRYPTED)
    (pal / "WORKING" / esfs.file_name(typed)).write_bytes(runtime)
    assert esfs.check_pal(pal) == []
    assert esfs.copies_to_repair(pal) == []
    # A factory item without its BACKUP twin is still a lost copy: named, and repaired.
    factory = "CfgParam_mbed.Factory"
    (pal / "WORKING" / esfs.file_name(factory)).write_bytes(
        esfs_codec.encode(factory, b"f", NONCE))
    assert esfs.check_pal(pal) == [f"WORKING/{esfs.file_name(factory)}: not in BACKUP"]
    assert [(s.parent.name, t.parent.name) for s, t in esfs.copies_to_repair(pal)] == [
        ("WORKING", "BACKUP")]
