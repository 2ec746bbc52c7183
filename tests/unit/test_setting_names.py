"""Misspelled settings: a `PEP_*` name (any case) that is no setting is named with the closest
one; in the env file it is a configuration error (exit 3), in the environment a warning."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from pep_agent.errors import ConfigError
from pep_agent.exit_codes import Exit
from pep_agent.settings.config import load_settings


def _env_file(root: Path, text: str) -> Path:
    path = root / "etc/default/pep-agent"
    path.parent.mkdir(parents=True)
    path.write_text(text)
    return path


@pytest.mark.parametrize(("line", "bad", "meant"), [
    ("PEP_SERVR_URL=http://10.0.0.9:5151", "PEP_SERVR_URL", "PEP_SERVER_URL"),
    ("pep_server_url=http://10.0.0.9:5151", "pep_server_url", "PEP_SERVER_URL"),
    ("PEP_INTERFCE=lo", "PEP_INTERFCE", "PEP_INTERFACE"),
    ("export Pep_Serial=SN-9", "Pep_Serial", "PEP_SERIAL"),
])
def test_an_unknown_name_in_the_env_file_is_exit_3_naming_it(
        tmp_path: Path, line: str, bad: str, meant: str) -> None:
    path = _env_file(tmp_path, f"# settings\nPEP_CATEGORY=development\n{line}\n")
    with pytest.raises(ConfigError) as raised:
        load_settings({"root": tmp_path}, {})
    assert raised.value.code == Exit.CONFIG
    message = raised.value.message
    assert f"{path} line 3" in message and bad in message
    assert f"did you mean {meant}?" in message


def test_a_name_close_to_nothing_is_still_named(tmp_path: Path) -> None:
    _env_file(tmp_path, "PEP_XYZZY=1\n")
    with pytest.raises(ConfigError) as raised:
        load_settings({"root": tmp_path}, {})
    assert "PEP_XYZZY" in raised.value.message and "did you mean" not in raised.value.message
    assert "README" in raised.value.hint


def test_other_variables_in_the_env_file_are_not_the_agents(tmp_path: Path) -> None:
    """The unit's env file may set variables for other programs (a proxy, a locale)."""
    _env_file(tmp_path, "HTTPS_PROXY=http://proxy:3128\nLANG=C.UTF-8\nPEPPER=1\n")
    assert load_settings({"root": tmp_path}, {}).server_url == "http://localhost:5151"


def test_an_unknown_name_in_the_environment_is_a_warning(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="pep_agent"):
        s = load_settings({"root": tmp_path}, {"PEP_SERVR_URL": "http://10.0.0.9:5151",
                                              "pep_category": "development"})
    assert s.server_url == "http://localhost:5151" and s.category == "production"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("PEP_SERVR_URL" in w and "did you mean PEP_SERVER_URL?" in w for w in warnings)
    assert any("pep_category" in w and "did you mean PEP_CATEGORY?" in w for w in warnings)


def test_known_names_raise_no_warning(tmp_path: Path,
                                      caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="pep_agent"):
        load_settings({"root": tmp_path}, {"PEP_CATEGORY": "development", "PEP_ROOT": "/",
                                           "PEP_SIM_FCC_RELEASE": "1"})
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
