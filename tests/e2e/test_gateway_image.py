"""The gateway image itself: it boots, the agent and its units are installed and valid,
the unit hardening holds, and the LED command drives a sysfs-like LED tree.

The gateway here is marked provisioned and verified before it boots, so neither unit runs.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from e2e_gateway import BOOT_TIMEOUT
from e2e_install import LED_DIR, LED_NAME
from e2e_testbed import Testbed

UNITS = ("pep-agent.service", "pep-agent-verify.service")

# The single-LED language (pep_agent/system/led_signals.py; leds.py drives it): timer blinks
# and solid states, and failures as blink codes that fall back to a timer of N x 200 ms on /
# 2 s off when the LED has no `pattern` trigger, as this fake tree has not.
LED_EXPECTED = {
    "off": {"trigger": "none", "brightness": "0"},
    "provisioning": {"trigger": "timer", "delay_on": "250", "delay_off": "250"},
    "waiting": {"trigger": "timer", "delay_on": "1000", "delay_off": "1000"},
    "success": {"trigger": "timer", "delay_on": "1800", "delay_off": "200"},
    "verified": {"trigger": "none", "brightness": "255"},
    "failed": {"trigger": "timer", "delay_on": "50", "delay_off": "50"},
    # exit 14, server unreachable: 14 - 9 = 5 blinks.
    "failed-server-unreachable": {"trigger": "timer", "delay_on": "1000", "delay_off": "2000"},
    # exit 15, serial already provisioned: 6 blinks.
    "failed-already-provisioned": {"trigger": "timer", "delay_on": "1200", "delay_off": "2000"},
    # exit 20, verification: 11 blinks.
    "failed-verification": {"trigger": "timer", "delay_on": "2200", "delay_off": "2000"},
}


def _led(bed: Testbed) -> dict[str, str]:
    led = bed.gw.path(LED_DIR) / LED_NAME
    return {f.name: f.read_text().strip() for f in Path(led).iterdir()}


@pytest.mark.incremental
class TestGatewayImage:
    def test_boots_with_the_agent_installed(self, testbed: Testbed) -> None:
        gw = testbed.gw
        # Where earlier versions kept their state: the units still honour its markers.
        state_dir = gw.path("/var/lib/pep-agent")
        state_dir.mkdir(mode=0o700)
        (state_dir / "provisioned").write_text(testbed.serial + "\n")
        (state_dir / "verified").write_text(testbed.serial + "\n")
        gw.boot()
        state = gw.run(["systemctl", "is-system-running", "--wait"], check=False,
                       timeout=BOOT_TIMEOUT).stdout.strip()
        failed = gw.run(["systemctl", "--failed", "--plain", "--no-legend"]).stdout
        assert state == "running", f"system state {state}; failed units:\n{failed}"
        assert "pep-agent" in gw.run(["pep-agent", "--help"]).stdout
        gw.run(["python3", "-c", "import typer, rich, shellingham, pep_agent.cli"])

    def test_units_skip_on_their_conditions(self, testbed: Testbed) -> None:
        gw = testbed.gw
        for unit in UNITS:
            assert gw.unit_property(unit, "LoadState") == "loaded"
            assert gw.unit_property(unit, "UnitFileState") == "enabled"
            # Both markers exist: neither the provisioning nor the verification runs.
            assert gw.unit_property(unit, "ConditionResult") == "no", unit
            assert gw.unit_property(unit, "ActiveState") == "inactive", unit

    def test_systemd_analyze_verify_passes(self, testbed: Testbed) -> None:
        result = testbed.gw.run(
            ["systemd-analyze", "verify", *(f"/usr/lib/systemd/system/{u}" for u in UNITS)],
            check=False)
        assert result.returncode == 0, result.stderr
        assert "pep-agent" not in result.stderr, result.stderr

    @pytest.mark.parametrize("unit,ceiling", [("pep-agent.service", 3.5),
                                              ("pep-agent-verify.service", 2.5)])
    def test_hardening_exposure(self, testbed: Testbed, unit: str, ceiling: float) -> None:
        out = testbed.gw.run(["systemd-analyze", "security", "--no-pager", unit]).stdout
        match = re.search(r"Overall exposure level for \S+: ([0-9.]+)", out)
        assert match, out
        exposure = float(match.group(1))
        print(f"{unit}: exposure {exposure}")
        assert exposure <= ceiling, out

    @pytest.mark.parametrize("state", sorted(LED_EXPECTED))
    def test_led_states(self, testbed: Testbed, state: str) -> None:
        testbed.gw.run(["pep-agent", "led", state])
        attributes = _led(testbed)
        for name, value in LED_EXPECTED[state].items():
            assert attributes[name] == value, f"{state}: {name} {attributes}"

    def test_led_command_backend_example(self, testbed: Testbed) -> None:
        env = {"PEP_LED_BACKEND": "command", "PEP_LED_COMMAND": "/usr/local/bin/led-command.sh"}
        for state in ("provisioning", "verified", "failed-server-unreachable"):
            testbed.gw.run(["pep-agent", "led", state], env=env)
        lines = [e.strip() for e in testbed.gw.journal("-t", "pep-agent-led", "-o", "cat")
                 .splitlines() if e.strip()]
        assert lines == [
            "state=provisioning colour=blue mode=blink-fast",
            "state=verified colour=blue mode=solid",
            "state=failed-server-unreachable colour=red mode=blink-code:server-unreachable",
        ], lines

    def test_powers_off(self, testbed: Testbed) -> None:
        testbed.gw.poweroff()
        assert not testbed.gw.running
