"""The pep server restarted during the injection: a record the server never finished.

The server creates the record (`deployed: false`) and injects the credentials into the
gateway's FCC; before it marks the record deployed (held there by its deploy_delay knob) it
is killed (SIGKILL: no clean-up of the record). Restarted on the same database, it holds the
unfinished record: identity requests get 409, `GET /v3/enrollment-id` answers 404. FCC holds
credentials the server never finished registering.

The agent must say so, as an unfinished record for its serial (not "not from this gateway"),
leave no identity installed and nothing moved, and stay that way on a rerun. Once the record
is removed on the server, as the hint says, the next boot provisions.
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from urllib.parse import quote

import pytest
from e2e_checks import ENDPOINT_FILE, IDENTITY, PROVISION_TIMEOUT, assert_provisioned_files
from e2e_gateway import REBOOT_STATUS, Gateway, wait_for
from e2e_testbed import Testbed

# Far longer than the test takes to kill the server: the record is never deployed.
DEPLOY_HELD = 600.0
STAGING = "/userdata/mbed/.pep-agent-staging"
UNFINISHED = "unfinished record"
# What the agent said before it told an unfinished record apart (lower case).
MISDIAGNOSED = ("not from this gateway", "is already provisioned on the server")
PREVIOUS = ("/userdata/mbed/mcc_config.pep-previous", "/userdata/edge_gw_config.pep-previous")


def server_log(testbed: Testbed) -> str:
    return testbed.server_log.read_text(errors="replace")


def records(testbed: Testbed) -> list[tuple[str, int]]:
    """(serial, deployed) of every record in the server's database, finished or not."""
    with closing(sqlite3.connect(str(testbed.work / "server.sqlite"), timeout=10)) as db:
        return [(str(s), int(d)) for s, d in
                db.execute("SELECT serialNumber, deployed FROM identities").fetchall()]


def agent_lines(gw: Gateway, *args: str) -> str:
    return gw.journal("-u", "pep-agent", "-q", "-o", "cat", *args)


def assert_says_unfinished(lines: str, serial: str) -> None:
    said = lines.lower()
    assert UNFINISHED in said and serial.lower() in said, lines[-3000:]
    for wrong in MISDIAGNOSED:
        assert wrong not in said, lines[-3000:]


def agent_stopped(gw: Gateway) -> str | None:
    """The agent's ActiveState once its run in this boot has ended and systemd will not
    restart it soon (before its first start, the unit is inactive too)."""
    if gw.unit_property("pep-agent.service", "ExecMainExitTimestampMonotonic") in ("", "0"):
        return None
    state = gw.unit_property("pep-agent.service", "ActiveState")
    sub = gw.unit_property("pep-agent.service", "SubState")
    return state if state in {"failed", "inactive"} or sub == "auto-restart" else None


@pytest.mark.server_restart
@pytest.mark.incremental
class TestServerRestartDuringInjection:
    def test_server_dies_before_it_marks_the_record_deployed(self, testbed: Testbed) -> None:
        gw = testbed.gw
        testbed.start_server()
        testbed.set_faults(deploy_delay=DEPLOY_HELD)
        gw.boot()
        # FCC stores the credentials before it answers the factory tool; the server then
        # holds the record undeployed (its deploy_delay knob) and is killed meanwhile.
        staged = gw.path(STAGING)
        wait_for(lambda: True if any(staged.glob(f"**/WORKING/{ENDPOINT_FILE}")) else None,
                 timeout=PROVISION_TIMEOUT, what="the credentials FCC stored")
        wait_for(lambda: True if "holding the record undeployed" in server_log(testbed)
                 else None, timeout=60, what="the server holding the record")
        assert records(testbed) == [(testbed.serial, 0)]
        testbed.kill_server()
        testbed.start_server()
        assert records(testbed) == [(testbed.serial, 0)]
        code, text = testbed.server_call(
            "GET", f"/v3/enrollment-id?serialNumber={quote(testbed.serial)}")
        assert code == 404, (code, text)

    def test_agent_reports_an_unfinished_record(self, testbed: Testbed) -> None:
        gw = testbed.gw
        state = wait_for(lambda: agent_stopped(gw), timeout=PROVISION_TIMEOUT,
                         what="the agent's run to end")
        lines = agent_lines(gw)
        assert state == "failed", f"pep-agent.service is {state}:\n{lines[-3000:]}"
        assert_says_unfinished(lines, testbed.serial)
        status = gw.unit_property("pep-agent.service", "ExecMainStatus")
        assert status not in ("", "0"), status
        # Nothing installed, nothing moved aside, and the server still holds only the
        # unfinished record: no deployed identity exists that could have been wasted.
        assert not gw.path(IDENTITY).exists()
        for path in PREVIOUS:
            assert not gw.path(path).exists(), path
        assert records(testbed) == [(testbed.serial, 0)]
        assert gw.running, "the gateway rebooted without an identity"

    def test_a_rerun_says_the_same(self, testbed: Testbed) -> None:
        gw = testbed.gw
        before = testbed.identity_requests()
        gw.poweroff()
        gw.boot()
        state = wait_for(lambda: agent_stopped(gw), timeout=PROVISION_TIMEOUT,
                         what="the agent's rerun to end")
        lines = agent_lines(gw, "-b", "0")
        assert state == "failed", f"pep-agent.service is {state}:\n{lines[-3000:]}"
        assert_says_unfinished(lines, testbed.serial)
        # One request, one 409: the rerun does not loop against the server.
        assert testbed.identity_requests() == before + 1
        assert records(testbed) == [(testbed.serial, 0)]
        assert not gw.path(IDENTITY).exists()

    def test_removing_the_record_lets_the_next_boot_provision(self, testbed: Testbed) -> None:
        gw = testbed.gw
        gw.poweroff()
        # What the operator does on the real server (in its MongoDB), as the hint says.
        with closing(sqlite3.connect(str(testbed.work / "server.sqlite"), timeout=10)) as db:
            db.execute("DELETE FROM identities WHERE serialNumber = ? AND deployed = 0",
                       (testbed.serial,))
            db.commit()
        gw.boot()
        status = gw.wait_exit(PROVISION_TIMEOUT)
        tail = gw.journal("-u", "pep-agent", "-n", "25", "-q")
        assert status == REBOOT_STATUS, f"stopped with {status}, not a reboot:\n{tail}"
        assert_provisioned_files(gw, testbed.serial)
        assert records(testbed) == [(testbed.serial, 1)]
        code, enrollment = testbed.server_call(
            "GET", f"/v3/enrollment-id?serialNumber={quote(testbed.serial)}")
        assert code == 200, enrollment
        assert json.loads(gw.path(IDENTITY).read_text())["enrollmentID"] == enrollment
