"""A gateway's life: first boot provisions and reboots, second boot verifies, then a
reprovisioning with a new serial; and a first boot that has to wait for its server.

Every step observes the gateway from outside (files in its root, its journal, systemd's view
of the units, edge-core's status endpoint), not the agent's own word only.
"""

from __future__ import annotations

import json

import pytest
from e2e_checks import (
    HELD,
    PROVISION_TIMEOUT,
    STATE_DIR,
    assert_provisioned_files,
    edge_core_in_boot,
    journal_json,
    led,
    no_unit_restarts,
    notify_rejections,
    probes,
    wait_verified,
)
from e2e_gateway import REBOOT_STATUS, wait_for
from e2e_testbed import Testbed

RETRY_SEEN_TIMEOUT = 120.0


@pytest.mark.incremental
class TestGatewayLife:
    def test_first_boot_provisions_and_reboots(self, testbed: Testbed) -> None:
        gw = testbed.gw
        testbed.start_server()
        gw.boot()
        status = gw.wait_exit(PROVISION_TIMEOUT, watch=lambda: no_unit_restarts(gw))
        assert status == REBOOT_STATUS, f"the gateway stopped with {status}, not a reboot"

        assert_provisioned_files(gw, testbed.serial)
        # Observed by the FCC wrapper at the moment FCC started (tests/e2e/gateway-files),
        # after it asked systemd to start edge-core.
        assert probes(gw) == [HELD], probes(gw)
        # On this boot edge-core never ran: not at boot (the agent is ordered before it and
        # reports ready only once it holds it; its stop cancels the boot's start job), and
        # the wrapper's start was skipped by the hold.
        started, held = edge_core_in_boot(gw, 1)
        assert (started, held) == (0, 1), (started, held)
        status = json.loads(gw.path(f"{STATE_DIR}/state.json").read_text())
        assert (status["state"], status["serial"]) == ("provisioned", testbed.serial)
        assert status["enrollment_id"]
        # The last LED state before the reboot: success (nearly solid blink).
        shown = led(gw)
        assert (shown["trigger"], shown["delay_on"], shown["delay_off"]) == ("timer", "1800", "200")

    def test_second_boot_verifies(self, testbed: Testbed) -> None:
        gw = testbed.gw
        gw.boot()
        wait_verified(gw, testbed.serial)
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
        entries = journal_json(gw, "-u", "pep-agent", "PEP_STEP=request-identity")
        assert entries
        assert {e.get("PEP_SERIAL") for e in entries} == {testbed.serial}
        assert all(e.get("PEP_ATTEMPT") for e in entries)
        steps = {e.get("PEP_STEP") for e in journal_json(gw, "-u", "pep-agent")}
        for step in ("preflight", "stop-edge-core", "start-fcc", "request-identity",
                     "install", "mark-provisioned", "reboot"):
            assert step in steps, f"no journal line with PEP_STEP={step}: {sorted(map(str, steps))}"
        assert notify_rejections(gw) == []
        verified = journal_json(gw, "-u", "pep-agent-verify", "PEP_STEP=verify")
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
        assert_provisioned_files(gw, new_serial)
        assert not gw.path(f"{STATE_DIR}/verified").exists()

        gw.boot()
        wait_verified(gw, new_serial)
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
        blink = led(gw)
        assert (blink["trigger"], blink["delay_on"]) == ("timer", "1000"), (blink, status_text)

        testbed.start_server()
        assert gw.wait_exit(PROVISION_TIMEOUT, watch=lambda: no_unit_restarts(gw)) \
            == REBOOT_STATUS
        assert_provisioned_files(gw, testbed.serial)
        state = json.loads(gw.path(f"{STATE_DIR}/state.json").read_text())
        assert state["attempt"] >= 2, state
