from pathlib import Path

import pytest

from pep_agent.config import load_settings, parse_env_file
from pep_agent.errors import ConfigError


def test_sources_are_layered(tmp_path: Path) -> None:
    env_file = tmp_path / "etc/default/pep-agent"
    env_file.parent.mkdir(parents=True)
    env_file.write_text('# comment\nPEP_SERIAL="from-file"\nPEP_CATEGORY=development\n'
                        "export PEP_RADIO_CONFIG='01'\nPEP_HTTP_TIMEOUT=7\n")
    s = load_settings({"root": tmp_path}, {"PEP_CATEGORY": "from-env"})
    assert (s.serial, s.category, s.radio_config, s.http_timeout) == (
        "from-file", "from-env", "01", 7.0)
    s = load_settings({"root": tmp_path, "category": "from-cli"}, {"PEP_CATEGORY": "from-env"})
    assert s.category == "from-cli"


def test_reference_cli_defaults(tmp_path: Path) -> None:
    s = load_settings({"root": tmp_path}, {})
    q = s.identity_query("SN 1", "10.0.0.2", 4000, "verification-key-does-not-exist")
    assert q == {
        "ip": "10.0.0.2", "port": "4000", "serialNumber": "SN 1",
        "apiAddress": "https://api.us-east-1.mbedcloud.com",
        "gatewayServicesAddress": "https://gateways.us-east-1.mbedcloud.com",
        "hardwareVersion": "izuma-edge-gateway", "radioConfig": "00", "ledConfig": "01",
        "category": "production", "verificationKey": "verification-key-does-not-exist"}
    assert s.server_url == "http://localhost:5151"


def test_fcc_argv_from_profile_lives_under_root(tmp_path: Path) -> None:
    s = load_settings({"root": tmp_path, "profile": "meta-pelion-edge"}, {})
    assert s.fcc_argv() == [str(tmp_path / "wigwag/wwrelay-utils/I2C/"
                                "factory-configurator-client-armcompiled.elf")]
    s = load_settings({"root": tmp_path, "fcc_command": "python3 -m x --flag 'a b'"}, {})
    assert s.fcc_argv() == ["python3", "-m", "x", "--flag", "a b"]


@pytest.mark.parametrize(("environ", "needle"), [
    ({"PEP_REBOOT": "maybe"}, "not a boolean"),
    ({"PEP_HTTP_TIMEOUT": "soon"}, "not a number"),
    ({"PEP_RETRY_CAP": "-1"}, ">= 0"),
    ({"PEP_NETWORK_DEADLINE": "nan"}, "finite"),
    ({"PEP_SERVER_DEADLINE": "inf"}, "finite"),
    ({"PEP_RETRY_BASE": "0"}, "greater than 0"),
    ({"PEP_PROFILE": "windows"}, "unknown profile"),
    ({"PEP_PARSEC": "perhaps"}, "PEP_PARSEC"),
])
def test_bad_values_are_one_line_errors(tmp_path: Path, environ: dict[str, str],
                                        needle: str) -> None:
    with pytest.raises(ConfigError) as e:
        load_settings({"root": tmp_path}, environ)
    assert needle in str(e.value)
    assert "\n" not in str(e.value)


def test_env_file_syntax_error() -> None:
    with pytest.raises(ConfigError, match="line 2"):
        parse_env_file("PEP_A=1\nthis is not an assignment\n")
