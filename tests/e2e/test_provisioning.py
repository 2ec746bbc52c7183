"""A gateway's life: first boot provisions and reboots, second boot verifies, then a
reprovisioning with a new serial; and a first boot that has to wait for its server.

Every step observes the gateway from outside (files in its root, its journal, systemd's view
of the units, edge-core's status endpoint), not the agent's own word only.
"""

from __future__ import annotations

import json
import stat
from typing import Any

import pytest
from e2e_gateway import REBOOT_STATUS, Gateway, wait_for
from e2e_install import LED_DIR, LED_NAME
from e2e_testbed import Testbed

PROVISION_TIMEOUT = 300.0
VERIFY_TIMEOUT = 180.0
RETRY_SEEN_TIMEOUT = 120.0
IDENTITY = "/userdata/edge_gw_config/identity.json"
MCC_CONFIG = "/userdata/mbed/mcc_config"
STATE_DIR = "/var/lib/pep-agent"
PROBE = "pep-e2e-probe"


def _read(gw: Gateway, path: str) -> str:
    return gw.path(path).read_text(encoding="utf-8").strip()


def _led(gw: Gateway) -> dict[str, str]:
    led = gw.path(LED_DIR) / LED_NAME
    return {name: (led / name).read_text().strip()
            for name in ("trigger", "brightness", "delay_on", "delay_off")}


def _journal_json(gw: Gateway, *args: str) -> list[dict[str, Any]]:
    out = gw.journal("-o", "json", *args)
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def _edge_core_status(gw: Gateway) -> dict[str, Any]:
    script = ("import json, urllib.request; print(urllib.request.urlopen("
              "'http://127.0.0.1:9101/status', timeout=5).read().decode())")
    return dict(json.loads(gw.run(["python3", "-c", script]).stdout))


def _assert_provisioned_files(gw: Gateway, serial: str) -> None:
    identity = gw.path(IDENTITY)
    assert identity.is_file(), "identity.json not installed"
    assert stat.S_IMODE(identity.stat().st_mode) == 0o600
    assert json.loads(identity.read_text())["serialNumber"] == serial
    assert _read(gw, f"{MCC_CONFIG}/WORKING/mbed.EndpointName") == serial
    assert _read(gw, f"{STATE_DIR}/provisioned") == serial
    # Unmasked again before the reboot, so that edge-core starts on the next boot.
    mask = gw.path("/etc/systemd/system/edge-core.service")
    assert not mask.is_symlink(), "edge-core is still masked"


def _no_unit_restarts(gw: Gateway) -> None:
    """A first boot with a reachable server never needs systemd to restart the agent."""
    restarts = gw.run(["systemctl", "show", "-P", "NRestarts", "pep-agent.service"],
                      check=False).stdout.strip()
    if restarts not in ("", "0"):
        tail = gw.journal("-u", "pep-agent", "-n", "15", "-q")
        raise AssertionError(f"pep-agent.service was restarted {restarts} time(s):\n{tail}")


def _wait_verified(gw: Gateway, serial: str) -> None:
    marker = gw.path(f"{STATE_DIR}/verified")
    wait_for(lambda: True if marker.is_file() else None, timeout=VERIFY_TIMEOUT,
             what="the verified marker")
    assert _read(gw, f"{STATE_DIR}/verified") == serial
    status = _edge_core_status(gw)
    assert (status["status"], status["endpoint-name"]) == ("connected", serial)
    wait_for(lambda: True if gw.unit_property("pep-agent-verify.service", "ActiveState")
             == "inactive" else None, timeout=60, what="pep-agent-verify to end")
    assert gw.unit_property("pep-agent-verify.service", "Result") == "success"
    assert gw.unit_property("pep-agent-verify.service", "ExecMainStatus") == "0"
    # The success LED: solid on.
    led = _led(gw)
    assert (led["trigger"], led["brightness"]) == ("none", "255"), led


@pytest.mark.incremental
class TestGatewayLife:
    def test_first_boot_provisions_and_reboots(self, testbed: Testbed) -> None:
        gw = testbed.gw
        testbed.start_server()
        gw.boot()
        status = gw.wait_exit(PROVISION_TIMEOUT, watch=lambda: _no_unit_restarts(gw))
        assert status == REBOOT_STATUS, f"the gateway stopped with {status}, not a reboot"

        _assert_provisioned_files(gw, testbed.serial)
        # Observed by the FCC wrapper at the moment FCC started (tests/e2e/gateway-files).
        probes = [e["MESSAGE"] for e in _journal_json(gw, "-t", PROBE)]
        assert probes == ["edge-core while FCC runs: enabled=masked active=inactive"], probes
        status = json.loads(gw.path(f"{STATE_DIR}/state.json").read_text())
        assert (status["state"], status["serial"]) == ("provisioned", testbed.serial)
        assert status["enrollment_id"]
        # The last LED state before the reboot: success (nearly solid blink).
        led = _led(gw)
        assert (led["trigger"], led["delay_on"], led["delay_off"]) == ("timer", "1800", "200")

    def test_second_boot_verifies(self, testbed: Testbed) -> None:
        gw = testbed.gw
        gw.boot()
        _wait_verified(gw, testbed.serial)
        assert gw.unit_property("pep-agent.service", "ConditionResult") == "no"
        assert gw.unit_property("pep-agent.service", "ActiveState") == "inactive"
        assert gw.unit_property("edge-core.service", "ActiveState") == "active"
        result = gw.run(["pep-agent", "status", "--json"], check=False)
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["state"] == "verified"

    def test_journal_has_the_run_with_structured_fields(self, testbed: Testbed) -> None:
        gw = testbed.gw
        # The command an operator types; the first boot's lines are in the persistent journal.
        plain = gw.run(["journalctl", "--no-pager", "-u", "pep-agent",
                        "PEP_STEP=request-identity"]).stdout
        assert "request-identity" in plain, plain
        entries = _journal_json(gw, "-u", "pep-agent", "PEP_STEP=request-identity")
        assert entries
        assert {e.get("PEP_SERIAL") for e in entries} == {testbed.serial}
        assert all(e.get("PEP_ATTEMPT") for e in entries)
        steps = {e.get("PEP_STEP") for e in _journal_json(gw, "-u", "pep-agent")}
        for step in ("preflight", "stop-edge-core", "start-fcc", "request-identity",
                     "install", "mark-provisioned", "reboot"):
            assert step in steps, f"no journal line with PEP_STEP={step}: {sorted(map(str, steps))}"
        verified = _journal_json(gw, "-u", "pep-agent-verify", "PEP_STEP=verify")
        assert any(f"connected as {testbed.serial}" in e["MESSAGE"] for e in verified)

    def test_reprovision_with_a_new_serial(self, testbed: Testbed) -> None:
        gw = testbed.gw
        new_serial = testbed.serial + "-B"
        # As an operator on the gateway's shell would; the agent reboots at the end, which
        # may end this session before the command returns (the container's PID 1 exits).
        result = gw.run(["pep-agent", "reprovision", "--yes"], env={"PEP_SERIAL": new_serial},
                        check=False, timeout=PROVISION_TIMEOUT)
        assert result.returncode in (0, -9, 137), (result.returncode, result.stderr)
        assert gw.wait_exit(PROVISION_TIMEOUT) == REBOOT_STATUS
        _assert_provisioned_files(gw, new_serial)
        assert not gw.path(f"{STATE_DIR}/verified").exists()

        gw.boot()
        _wait_verified(gw, new_serial)
        gw.poweroff()


class TestServerLate:
    def test_first_boot_retries_until_the_server_appears(self, testbed: Testbed) -> None:
        gw = testbed.gw
        gw.boot()

        def retrying() -> str | None:
            text = gw.unit_property("pep-agent.service", "StatusText")
            return text if "attempt 2" in text else None

        status_text = wait_for(retrying, timeout=RETRY_SEEN_TIMEOUT,
                               what="a second attempt in pep-agent's status")
        shown = gw.run(["systemctl", "status", "--no-pager", "pep-agent.service"],
                       check=False).stdout
        assert "attempt" in shown and "Status:" in shown, shown
        assert gw.unit_property("pep-agent.service", "ActiveState") == "active"
        assert not gw.path(f"{STATE_DIR}/provisioned").exists()
        # The LED says "waiting" (slow blink) between attempts.
        led = _led(gw)
        assert (led["trigger"], led["delay_on"]) == ("timer", "1000"), (led, status_text)

        testbed.start_server()
        assert gw.wait_exit(PROVISION_TIMEOUT, watch=lambda: _no_unit_restarts(gw)) \
            == REBOOT_STATUS
        _assert_provisioned_files(gw, testbed.serial)
        state = json.loads(gw.path(f"{STATE_DIR}/state.json").read_text())
        assert state["attempt"] >= 2, state
