"""LED backends against fake sysfs trees and a real recording script."""

from __future__ import annotations

import json
import logging
import shlex
from pathlib import Path

import pytest

from pep_agent.errors import ConfigError
from pep_agent.exit_codes import Exit
from pep_agent.system.led_signals import BLINK_CODES, STATES, failure_state
from pep_agent.system.leds import make_led

ATTRS = ("trigger", "brightness", "delay_on", "delay_off", "pattern")


def fake_led(path: Path, *, pattern: bool = True, max_brightness: str | None = None) -> Path:
    """A directory shaped like /sys/class/leds/<name> before any trigger is chosen."""
    path.mkdir(parents=True)
    (path / "trigger").write_text("[none] timer heartbeat pattern")
    (path / "brightness").write_text("0")
    (path / "delay_on").write_text("500")
    (path / "delay_off").write_text("500")
    if pattern:
        (path / "pattern").write_text("")
    if max_brightness is not None:
        (path / "max_brightness").write_text(max_brightness + "\n")
    return path


def snapshot(path: Path) -> dict[str, str]:
    return {a: (path / a).read_text() for a in ATTRS if (path / a).exists()}


SINGLE_EXPECTED = {
    "off": {"trigger": "none", "brightness": "0"},
    "provisioning": {"trigger": "timer", "delay_on": "250", "delay_off": "250"},
    "waiting": {"trigger": "timer", "delay_on": "1000", "delay_off": "1000"},
    "success": {"trigger": "timer", "delay_on": "1800", "delay_off": "200"},
    "verified": {"trigger": "none", "brightness": "255"},
    "failed": {"trigger": "timer", "delay_on": "50", "delay_off": "50"},
}


@pytest.mark.parametrize("state", sorted(SINGLE_EXPECTED))
def test_sysfs_single_led_states(tmp_path: Path, state: str) -> None:
    led_dir = fake_led(tmp_path / "leds" / "status")
    make_led("sysfs", leds_dir=tmp_path / "leds").show(state)
    got = snapshot(led_dir)
    for attr, value in SINGLE_EXPECTED[state].items():
        assert got[attr] == value, attr


def test_solid_uses_max_brightness(tmp_path: Path) -> None:
    led_dir = fake_led(tmp_path / "leds" / "led0", max_brightness="1")
    make_led("sysfs", leds_dir=tmp_path / "leds", name="led0").show("verified")
    assert snapshot(led_dir)["brightness"] == "1"


def test_failure_blink_code_uses_pattern_trigger(tmp_path: Path) -> None:
    led_dir = fake_led(tmp_path / "leds" / "status")
    make_led("sysfs", leds_dir=tmp_path / "leds").show("failed-network")
    got = snapshot(led_dir)
    assert got["trigger"] == "pattern"
    # Two square blinks (200 ms on, 300 ms off), then a 2 s pause.
    assert got["pattern"] == "255 200 255 0 0 300 0 0 255 200 255 0 0 2000 0 0"


def test_failure_falls_back_to_timer_without_pattern(tmp_path: Path) -> None:
    led_dir = fake_led(tmp_path / "leds" / "status", pattern=False)
    led = make_led("sysfs", leds_dir=tmp_path / "leds")
    led.show("failed-server-unreachable")
    assert snapshot(led_dir) == {"trigger": "timer", "brightness": "0",
                                 "delay_on": "1000", "delay_off": "2000"}
    assert not (led_dir / "pattern").exists()


@pytest.mark.parametrize("pattern", [True, False])
def test_every_state_is_distinct_on_one_led(tmp_path: Path, pattern: bool) -> None:
    seen = {}
    for i, state in enumerate(STATES):
        leds = tmp_path / str(i)
        led_dir = fake_led(leds / "status", pattern=pattern)
        make_led("sysfs", leds_dir=leds).show(state)
        seen[state] = tuple(sorted(snapshot(led_dir).items()))
    assert len(set(seen.values())) == len(STATES)


def test_sysfs_writes_only_existing_files(tmp_path: Path) -> None:
    led_dir = tmp_path / "leds" / "status"
    led_dir.mkdir(parents=True)
    (led_dir / "trigger").write_text("none")
    make_led("sysfs", leds_dir=tmp_path / "leds").show("provisioning")
    assert sorted(p.name for p in led_dir.iterdir()) == ["trigger"]
    assert (led_dir / "trigger").read_text() == "timer"


def test_missing_led_dir_warns_once_and_creates_nothing(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    led = make_led("sysfs", leds_dir=tmp_path / "leds")
    with caplog.at_level(logging.DEBUG, logger="pep_agent.system.leds"):
        led.show("provisioning")
        led.show("verified")
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "does not exist" in warnings[0].getMessage()
    assert not (tmp_path / "leds").exists()


def test_missing_attribute_warns_without_raising(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "leds" / "status").mkdir(parents=True)
    with caplog.at_level(logging.WARNING, logger="pep_agent.system.leds"):
        make_led("sysfs", leds_dir=tmp_path / "leds").show("verified")
    assert "cannot drive" in caplog.text
    assert list((tmp_path / "leds" / "status").iterdir()) == []


def rgb_tree(tmp_path: Path) -> Path:
    leds = tmp_path / "leds"
    for colour in ("red", "green", "blue"):
        fake_led(leds / colour)
    return leds


DARK = {"trigger": "none", "brightness": "0"}
BLUE_BLINK = {"trigger": "timer", "delay_on": "250", "delay_off": "250"}


def lit(leds: Path, colour: str, expected: dict[str, str]) -> bool:
    got = snapshot(leds / colour)
    return all(got.get(k) == v for k, v in expected.items())


def test_rgb_provisioning_blinks_blue(tmp_path: Path) -> None:
    leds = rgb_tree(tmp_path)
    make_led("rgb", leds_dir=leds, identity_json=tmp_path / "identity.json").show("provisioning")
    assert lit(leds, "blue", BLUE_BLINK)
    assert lit(leds, "red", DARK)
    assert lit(leds, "green", DARK)


def test_rgb_colour_language(tmp_path: Path) -> None:
    leds = rgb_tree(tmp_path)
    led = make_led("rgb", leds_dir=leds)
    led.show("waiting")
    assert lit(leds, "green", {"trigger": "timer", "delay_on": "1000", "delay_off": "1000"})
    led.show("verified")
    assert lit(leds, "blue", {"trigger": "none", "brightness": "255"})
    assert lit(leds, "green", DARK)
    led.show("failed")
    assert lit(leds, "red", {"trigger": "none", "brightness": "255"})
    assert lit(leds, "blue", DARK)
    led.show("failed-serial")
    assert lit(leds, "red", {"trigger": "pattern", "pattern": "255 200 255 0 0 2000 0 0"})


def test_rgb_swaps_green_and_blue_once_identity_says_rbg(tmp_path: Path) -> None:
    leds = rgb_tree(tmp_path)
    identity = tmp_path / "identity.json"
    led = make_led("rgb", leds_dir=leds, identity_json=identity)
    led.show("provisioning")  # identity.json does not exist yet: RGB wiring
    assert lit(leds, "blue", BLUE_BLINK)
    identity.write_text(json.dumps({"serialNumber": "SN1", "ledConfig": "02"}))
    led.show("provisioning")
    assert lit(leds, "green", BLUE_BLINK)
    assert lit(leds, "blue", DARK)


def test_rgb_configured_wiring_applies_before_identity_exists(tmp_path: Path) -> None:
    leds = rgb_tree(tmp_path)
    make_led("rgb", leds_dir=leds, identity_json=tmp_path / "none.json",
             led_config="02").show("verified")
    assert lit(leds, "green", {"trigger": "none", "brightness": "255"})
    assert lit(leds, "blue", DARK)


def test_rgb_unreadable_identity_never_logs_its_content(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    leds = rgb_tree(tmp_path)
    identity = tmp_path / "identity.json"
    identity.write_text('{"ledConfig": "02", "secret": "TOPSECRETVALUE"')  # truncated JSON
    with caplog.at_level(logging.DEBUG):
        make_led("rgb", leds_dir=leds, identity_json=identity).show("provisioning")
    assert "ledConfig" in caplog.text
    assert "TOPSECRETVALUE" not in caplog.text
    assert lit(leds, "blue", BLUE_BLINK)


def test_every_state_is_distinct_on_rgb(tmp_path: Path) -> None:
    seen = set()
    for i, state in enumerate(STATES):
        leds = rgb_tree(tmp_path / str(i))
        make_led("rgb", leds_dir=leds).show(state)
        seen.add(tuple(tuple(sorted(snapshot(leds / c).items()))
                       for c in ("red", "green", "blue")))
    assert len(seen) == len(STATES)


def recorder(tmp_path: Path, status: int = 0) -> tuple[Path, Path]:
    script = tmp_path / "led-tool"
    calls = tmp_path / "calls"
    script.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" >> "{calls}"\nexit {status}\n')
    script.chmod(0o755)
    return script, calls


@pytest.mark.spawns
def test_command_backend_passes_state(tmp_path: Path) -> None:
    script, calls = recorder(tmp_path)
    led = make_led("command", leds_dir=tmp_path,
                   command=f"{shlex.quote(str(script))} --board 'two words'")
    led.show("failed-install")
    assert calls.read_text().splitlines() == ["--board", "two words", "failed-install"]


@pytest.mark.spawns
def test_command_failure_is_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    script, calls = recorder(tmp_path, status=3)
    with caplog.at_level(logging.WARNING, logger="pep_agent.system.leds"):
        make_led("command", leds_dir=tmp_path, command=str(script)).show("waiting")
        make_led("command", leds_dir=tmp_path, command=str(tmp_path / "absent")).show("off")
    assert calls.read_text() == "waiting\n"
    assert "exited with status 3" in caplog.text
    assert "command not found" in caplog.text


@pytest.mark.parametrize(("backend", "command"), [("blinky", None), ("command", None),
                                                  ("command", "tool 'unbalanced")])
def test_bad_settings_are_config_errors(tmp_path: Path, backend: str, command: str | None) -> None:
    with pytest.raises(ConfigError):
        make_led(backend, leds_dir=tmp_path, command=command)


def test_unknown_state_is_ignored_with_a_warning(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    led_dir = fake_led(tmp_path / "leds" / "status")
    before = snapshot(led_dir)
    with caplog.at_level(logging.WARNING, logger="pep_agent.system.leds"):
        make_led("sysfs", leds_dir=tmp_path / "leds").show("disco")
    assert "unknown state" in caplog.text
    assert snapshot(led_dir) == before


def test_failure_states_and_blink_codes() -> None:
    assert failure_state(Exit.SERVER_UNREACHABLE) == "failed-server-unreachable"
    assert failure_state(Exit.ALREADY_PROVISIONED) == "failed-already-provisioned"
    assert failure_state(Exit.CONFIG) == "failed"
    assert all(failure_state(code) in STATES for code in Exit)
    assert len(set(STATES)) == len(STATES)
    assert BLINK_CODES[Exit.SERIAL] == 1
    assert BLINK_CODES[Exit.SEALING] == 14
    assert BLINK_CODES[Exit.STATE] == 12
    assert BLINK_CODES[Exit.NO_SPACE] == 15
    assert len(set(BLINK_CODES.values())) == len(BLINK_CODES) == 15


@pytest.mark.spawns
def test_show_returns_the_problems_a_line_test_must_see(tmp_path: Path) -> None:
    leds = tmp_path / "leds"
    fake_led(leds / "status")
    assert make_led("sysfs", leds_dir=leds).show("verified") == []
    assert make_led("sysfs", leds_dir=leds, name="absent").show("verified") == [
        f"{leds / 'absent'} does not exist; LED left alone"]
    fake_led(leds / "red")
    fake_led(leds / "green")
    problems = make_led("rgb", leds_dir=leds).show("verified")
    assert problems == [f"{leds / 'blue'} does not exist; LED left alone"]
    assert make_led("command", leds_dir=leds, command="false").show("off")
    assert make_led("none", leds_dir=leds).show("off") == [
        "no LED is configured (LED backend none)"]
    assert make_led("sysfs", leds_dir=leds).show("disco") == ["unknown state 'disco'"]
