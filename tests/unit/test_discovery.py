from pathlib import Path

import pytest

from pep_agent.errors import SerialError
from pep_agent.gateway.discovery import cpuinfo_serial, discover_serial
from pep_agent.settings.config import load_settings
from pep_agent.settings.serials import validate_serial
from pep_agent.system import proc


def _settings(root: Path, **kw: object):  # type: ignore[no-untyped-def]
    return load_settings({"root": root, **kw}, {})


def _write(root: Path, rel: str, text: str) -> None:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)


def test_configured_serial_wins(tmp_path: Path) -> None:
    _write(tmp_path, "proc/device-tree/serial-number", "DT-1\x00")
    assert discover_serial(_settings(tmp_path, serial="LINE 7/GW-001")) == (
        "LINE 7/GW-001", "configuration")


def test_device_tree_before_cpuinfo_and_dmi(tmp_path: Path) -> None:
    _write(tmp_path, "proc/cpuinfo", "processor\t: 0\nSerial\t\t: 10000000abcdef01\n")
    _write(tmp_path, "sys/class/dmi/id/product_serial", "DMI-9\n")
    _write(tmp_path, "sys/firmware/devicetree/base/serial-number", "DT-2\x00")
    assert discover_serial(_settings(tmp_path)) == ("DT-2", "device-tree")
    (tmp_path / "sys/firmware/devicetree/base/serial-number").unlink()
    assert discover_serial(_settings(tmp_path)) == ("10000000abcdef01", "cpuinfo")
    (tmp_path / "proc/cpuinfo").write_text("Serial : 0000000000000000\n")
    assert discover_serial(_settings(tmp_path)) == ("DMI-9", "dmi")


def test_serial_command_is_last(tmp_path: Path) -> None:
    calls = []

    def fake_run(argv: list[str], timeout: float) -> proc.Result:
        calls.append(argv)
        return proc.Result(argv, 0, "EEPROM-77\n", "")

    s = _settings(tmp_path, serial_command="read-eeprom --bus 1")
    assert discover_serial(s, run=fake_run) == ("EEPROM-77", "command")
    assert calls == [["read-eeprom", "--bus", "1"]]


def test_nothing_found(tmp_path: Path) -> None:
    with pytest.raises(SerialError, match="no serial number found"):
        discover_serial(_settings(tmp_path))


@pytest.mark.parametrize("bad", ["", "   ", "a" * 65, "GW%41", "GW;1", "GW\n1", "Gé"])
def test_rejects_bad_serials(bad: str) -> None:
    with pytest.raises(SerialError):
        validate_serial(bad, "test")


def test_accepts_recommended_characters() -> None:
    s = "LINE 7/GW+001,rev=2:a.b-c'd"
    assert validate_serial(f" {s}\x00", "test") == s


def test_cpuinfo_parser() -> None:
    assert cpuinfo_serial("Hardware : BCM2835\nSerial  : 00000000deadbeef\n") == "00000000deadbeef"
    assert cpuinfo_serial("model name : x86\n") is None
