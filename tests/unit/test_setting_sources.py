"""A bad value is named by where it came from: the option, the variable, or the env file's line;
and a serial too long for any request is told the serial-number rule, not a byte count."""

from __future__ import annotations

from pathlib import Path

import pytest

from pep_agent.errors import PepError
from pep_agent.exit_codes import Exit
from pep_agent.settings.config import load_settings


def test_a_bad_url_from_the_option_names_the_option(tmp_path: Path) -> None:
    with pytest.raises(PepError) as raised:
        load_settings({"root": tmp_path, "server_url": "ftp://10.0.0.9"}, {})
    assert raised.value.code == Exit.CONFIG
    assert "invalid server URL (--server) 'ftp://10.0.0.9'" in raised.value.message
    assert "PEP_SERVER_URL" not in raised.value.message


def test_a_bad_url_from_the_environment_or_the_file_names_them(tmp_path: Path) -> None:
    with pytest.raises(PepError) as raised:
        load_settings({"root": tmp_path}, {"PEP_SERVER_URL": "ftp://10.0.0.9"})
    assert "invalid server URL (PEP_SERVER_URL) 'ftp://10.0.0.9'" in raised.value.message
    env_file = tmp_path / "etc/default/pep-agent"
    env_file.parent.mkdir(parents=True)
    env_file.write_text("PEP_CATEGORY=development\nPEP_API_ADDRESS=ftp://x\n")
    with pytest.raises(PepError) as raised:
        load_settings({"root": tmp_path}, {})
    assert (f"invalid apiAddress (PEP_API_ADDRESS in {env_file} line 2) 'ftp://x'"
            in raised.value.message)


def test_a_blank_serial_from_the_option_names_the_option(tmp_path: Path) -> None:
    with pytest.raises(PepError) as raised:
        load_settings({"root": tmp_path, "serial": "   "}, {})
    assert raised.value.code == Exit.SERIAL
    assert raised.value.message == "the serial number from --serial is empty"
    assert "--serial" in raised.value.hint
    assert "PEP_SERIAL_COMMAND" not in raised.value.hint
    assert "configuration" not in raised.value.message + raised.value.hint


@pytest.mark.parametrize("size", [8000, 1_000_000])
def test_an_overlong_serial_is_told_the_serial_rule(tmp_path: Path, size: int) -> None:
    with pytest.raises(PepError) as raised:
        load_settings({"root": tmp_path, "serial": "S" * size}, {})
    assert raised.value.code == Exit.SERIAL
    assert (f"the serial number from --serial has {size} characters (at most 64)"
            in raised.value.message)
    assert "shorten" not in raised.value.hint and "bytes" not in raised.value.hint


def test_a_long_serial_that_fits_a_request_is_left_to_the_command(tmp_path: Path) -> None:
    """The pep-cli commands take any serial the server can be asked about, as pep-cli does."""
    assert load_settings({"root": tmp_path, "serial": "S" * 100}, {}).serial == "S" * 100
