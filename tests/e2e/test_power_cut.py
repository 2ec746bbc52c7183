"""A power cut right after the injection, before the server's answer reaches the agent.

The server has injected FCC (FCC stored the credentials, the record is deployed) and holds
its 200 answer (the simulator's answer_delay knob) while the gateway loses power (SIGKILL to
the container: no shutdown, /run gone, the agent's hold on edge-core gone with it). The next
boot must end provisioned without asking for an identity again (the server would answer 409):
one identity request in the server's log, one deployed record, the credentials FCC stored
installed with that record's enrollment id, and edge-core not started before the agent is done.

Needs the recovery rule (staged credentials and no saved answer: ask the server
for the record). Runs alone with `pytest tests/e2e -m power_cut`.
"""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest
from e2e_checks import (
    ENDPOINT_FILE,
    IDENTITY,
    PROVISION_TIMEOUT,
    STATE_DIR,
    assert_provisioned_files,
    edge_core_in_boot,
)
from e2e_gateway import REBOOT_STATUS, wait_for
from e2e_testbed import Testbed

# Long enough to cut the power well before the answer goes out, short enough that the
# server's waiting thread does not hold up its shutdown for long.
ANSWER_HELD = 90.0
STAGING = "/userdata/mbed/.pep-agent-staging"


@pytest.mark.power_cut
@pytest.mark.incremental
class TestPowerCutAfterInjection:
    def test_power_is_cut_once_fcc_has_the_credentials(self, testbed: Testbed) -> None:
        gw = testbed.gw
        testbed.start_server()
        testbed.set_faults(answer_delay=ANSWER_HELD)
        gw.boot()
        record = f"/v3/enrollment-id?serialNumber={quote(testbed.serial)}"
        wait_for(lambda: True if testbed.server_call("GET", record)[0] == 200 else None,
                 timeout=PROVISION_TIMEOUT, what="the server's injection")
        # FCC stores the credentials before it answers the server's factory tool.
        staged = gw.path(STAGING)
        wait_for(lambda: True if any(staged.glob(f"**/WORKING/{ENDPOINT_FILE}")) else None,
                 timeout=60, what="the credentials FCC stored")
        gw.kill()
        assert not gw.path(f"{STATE_DIR}/response.json").exists(), \
            "the answer reached the agent before the power cut"
        assert not gw.path(IDENTITY).exists()
        testbed.set_faults(answer_delay=0)

    def test_next_boot_ends_provisioned_without_a_second_injection(self,
                                                                   testbed: Testbed) -> None:
        gw = testbed.gw
        gw.boot()

        def agent_not_failed() -> None:
            # A run that ends in an exit systemd does not restart (15: 409 from the server)
            # would otherwise leave this waiting for the whole timeout.
            if gw.unit_property("pep-agent.service", "ActiveState") == "failed":
                tail = gw.journal("-u", "pep-agent", "-n", "20", "-q")
                raise AssertionError(f"pep-agent.service failed:\n{tail}")

        status = gw.wait_exit(PROVISION_TIMEOUT, watch=agent_not_failed)
        tail = gw.journal("-u", "pep-agent", "-n", "20", "-q")
        assert status == REBOOT_STATUS, f"stopped with {status}, not a reboot:\n{tail}"
        assert testbed.identity_requests() == 1, tail
        assert_provisioned_files(gw, testbed.serial)
        code, text = testbed.server_call("GET", "/v3/enrollment-ids?limit=1000")
        assert code == 200, text
        records = json.loads(text)["results"]
        assert [(r["serialNumber"], r["deployed"]) for r in records] == [(testbed.serial, True)]
        identity = json.loads(gw.path(IDENTITY).read_text())
        assert identity["enrollmentID"] == records[0]["enrollmentID"]
        # The boot after the cut held edge-core again before it could start.
        assert edge_core_in_boot(gw, 2)[0] == 0, "edge-core started before the agent was done"
