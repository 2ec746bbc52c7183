from pathlib import Path

import pytest

from pep_agent.errors import ConfigError, PepError
from pep_agent.exit_codes import Exit
from pep_agent.settings.config import load_settings
from pep_agent.settings.envfile import parse_env_file
from pep_agent.settings.identity_query import identity_query


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
    q = identity_query(s, "SN 1", "10.0.0.2", 4000, "verification-key-does-not-exist")
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
    ({"PEP_RETRY_CAP": "-1"}, "from 0 to 604800"),
    ({"PEP_HTTP_TIMEOUT": "1e300"}, "from 0 to 604800"),
    ({"PEP_FCC_START_TIMEOUT": "1e300"}, "from 0 to 604800"),
    ({"PEP_INJECTION_RETRIES": "1e3"}, "not a whole number"),
    ({"PEP_INJECTION_RETRIES": "1000000"}, "from 0 to 1000"),
    ({"PEP_FSS_INTERVAL": "ten seconds"}, "FSS interval"),
    ({"PEP_SERIAL": "   "}, "empty"),
    ({"PEP_NETWORK_DEADLINE": "nan"}, "finite"),
    ({"PEP_SERVER_DEADLINE": "inf"}, "finite"),
    ({"PEP_RETRY_BASE": "0"}, "greater than 0"),
    ({"PEP_PROFILE": "windows"}, "unknown profile"),
    ({"PEP_PARSEC": "perhaps"}, "PEP_PARSEC"),
])
def test_bad_values_are_one_line_errors(tmp_path: Path, environ: dict[str, str],
                                        needle: str) -> None:
    with pytest.raises(PepError) as e:
        load_settings({"root": tmp_path}, environ)
    assert needle in str(e.value)
    assert e.value.code == (Exit.SERIAL if "PEP_SERIAL" in environ else Exit.CONFIG)
    assert "\n" not in str(e.value)


def test_env_file_syntax_error() -> None:
    with pytest.raises(ConfigError, match="line 2"):
        parse_env_file("PEP_A=1\nthis is not an assignment\n")


def _env_file(root: Path, data: bytes) -> Path:
    path = root / "etc/default/pep-agent"
    path.parent.mkdir(parents=True)
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(("data", "line", "needle"), [
    (b"PEP_SERIAL=A\nPEP_CATEGORY=caf\xe9\n", 2, "byte 0xe9 is not UTF-8"),
    ("PEP_SERIAL=A\n".encode("utf-16"), 1, "UTF-16"),
    (b"\xef\xbb\xbfPEP_SERIAL=A\n", 1, "byte-order mark"),
    (b"# ok\n\nPEP_HTTP_TIMEOUT=1e300\n", 3, "PEP_HTTP_TIMEOUT='1e300' must be"),
    (b"PEP_SERIAL=A\nPEP_REBOOT=maybe\n", 2, "not a boolean"),
    (b"PEP_A=1\n\nPEP B=2\n", 3, "expected KEY=VALUE"),
    (b"PEP_SERIAL=a\x00b\n", 1, "NUL byte"),
])
def test_env_file_errors_name_the_file_and_the_line(tmp_path: Path, data: bytes, line: int,
                                                    needle: str) -> None:
    path = _env_file(tmp_path, data)
    with pytest.raises(ConfigError) as e:
        load_settings({"root": tmp_path}, {})
    assert str(e.value).startswith(f"{path} line {line}: ")
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_numbers_from_the_command_line_are_checked_too(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="PEP_VERIFY_TIMEOUT"):
        load_settings({"root": tmp_path, "verify_timeout": 1e300}, {})
    with pytest.raises(ConfigError, match="PEP_VERIFY_TIMEOUT"):
        load_settings({"root": tmp_path, "verify_timeout": float("inf")}, {})
    assert load_settings({"root": tmp_path, "verify_timeout": 5.0}, {}).verify_timeout == 5.0


def test_a_serial_is_stripped_wherever_it_is_configured(tmp_path: Path) -> None:
    _env_file(tmp_path, b"PEP_SERIAL=' from file '\n")
    assert load_settings({"root": tmp_path}, {}).serial == "from file"
    assert load_settings({"root": tmp_path}, {"PEP_SERIAL": " lead"}).serial == "lead"
    assert load_settings({"root": tmp_path, "serial": " lead "}, {}).serial == "lead"


def test_profile_defaults_are_resolved_into_the_settings(tmp_path: Path) -> None:
    """Settings carry the effective values: a setting when given, else the profile's."""
    s = load_settings({"root": tmp_path, "profile": "meta-pelion-edge"}, {})
    assert (s.led_backend, s.led_dir, s.status_url) == (
        "rgb", tmp_path / "sys/class/leds", "http://127.0.0.1:9101/status")
    assert load_settings({"root": tmp_path, "profile": "snap"}, {}).status_url == (
        "http://127.0.0.1:8081/status")
    s = load_settings({"root": tmp_path}, {"PEP_LED_BACKEND": "command",
                                           "PEP_LED_DIR": "/leds",
                                           "PEP_STATUS_URL": "http://10.0.0.1:9101/status"})
    assert (s.led_backend, s.led_dir, s.status_url) == (
        "command", Path("/leds"), "http://10.0.0.1:9101/status")
    assert load_settings({"root": tmp_path}, {"PEP_LED_BACKEND": ""}).led_backend == "sysfs"
