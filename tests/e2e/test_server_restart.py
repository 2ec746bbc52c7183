"""The pep server restarted during the injection: a record the server never finished.

The server creates the record (`deployed: false`), connects to the gateway's FCC and sends
the credentials; FCC is stopped (SIGSTOP) so it cannot answer, and the server is killed
(SIGKILL: no clean-up of the record) while it waits. Restarted on the same database, it
holds the unfinished record: identity requests get 409, `GET /v3/enrollment-id` answers 404.

The agent must say so, as an unfinished record for its serial (not "not from this gateway"),
leave no identity installed and nothing moved, and stay that way on a rerun. Once the record
is removed on the server, as the hint says, the next boot provisions.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
from contextlib import closing, suppress
from urllib.parse import quote

import pytest
from e2e_checks import IDENTITY, PROVISION_TIMEOUT, assert_provisioned_files
from e2e_gateway import REBOOT_STATUS, Gateway, wait_for
from e2e_testbed import Testbed

EDGE_CORE_PORT = 9101
# The server holds the identity request this long before it creates the record, so FCC can
# be stopped once it listens and before the server connects.
REQUEST_HELD = 5.0
# How long the server's factory tool would wait for FCC's answer: far beyond the kill.
FCC_TIMEOUT = 600.0
UNFINISHED = "unfinished record"
# What the agent said before it told an unfinished record apart (lower case).
MISDIAGNOSED = ("not from this gateway", "is already provisioned on the server")
PREVIOUS = ("/userdata/mbed/mcc_config.pep-previous", "/userdata/edge_gw_config.pep-previous")


def fcc_listener(testbed: Testbed) -> tuple[int, int] | None:
    """(host pid, port) of the process listening in the gateway's namespace, edge-core aside."""
    assert testbed.net is not None
    out = subprocess.run(["ip", "netns", "exec", testbed.net.gateway_ns, "ss", "-Hltnp"],
                         capture_output=True, text=True, timeout=10, check=True).stdout
    for line in out.splitlines():
        port = re.search(r":(\d+)\s", line)
        pid = re.search(r"pid=(\d+)", line)
        if port and pid and int(port.group(1)) != EDGE_CORE_PORT:
            return int(pid.group(1)), int(port.group(1))
    return None


def fcc_connected(testbed: Testbed, port: int) -> bool | None:
    """True once the server's factory tool has a connection open to FCC's port."""
    assert testbed.net is not None
    out = subprocess.run(["ip", "netns", "exec", testbed.net.gateway_ns, "ss", "-Htn",
                          "state", "established", f"sport = :{port}"],
                         capture_output=True, text=True, timeout=10, check=True).stdout
    return True if out.strip() else None


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
    """The agent's ActiveState once its run has ended and systemd will not restart it soon."""
    state = gw.unit_property("pep-agent.service", "ActiveState")
    sub = gw.unit_property("pep-agent.service", "SubState")
    return state if state in {"failed", "inactive"} or sub == "auto-restart" else None


@pytest.mark.server_restart
@pytest.mark.incremental
class TestServerRestartDuringInjection:
    def test_server_dies_while_fcc_holds_the_message(self, testbed: Testbed) -> None:
        gw = testbed.gw
        testbed.start_server()
        testbed.set_faults(delay=REQUEST_HELD, fcc_timeout=FCC_TIMEOUT)
        gw.boot()
        pid, port = wait_for(lambda: fcc_listener(testbed), timeout=PROVISION_TIMEOUT,
                             what="FCC listening in the gateway", interval=0.1)
        # FCC is a child of the container this test booted: stop it before the server's
        # factory tool connects, so the injection cannot finish.
        os.kill(pid, signal.SIGSTOP)
        try:
            wait_for(lambda: fcc_connected(testbed, port), timeout=60,
                     what="the factory tool's connection to FCC")
            assert records(testbed) == [(testbed.serial, 0)]
            testbed.kill_server()
            testbed.start_server()
        finally:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
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
