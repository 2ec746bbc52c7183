"""A gateway whose /var/lib lives in RAM, as on a Yocto image with read-only-rootfs.

volatile-binds puts an overlay in RAM over /var/lib: what the image holds there is visible,
everything written there is gone at the next boot. Here systemd-nspawn does the same with an
overlay whose upper layer is a temporary directory it removes when the container stops.

Boot 1 provisions and reboots. Every later boot, with /var/lib as empty as at boot 1, must
leave the gateway working: edge-core runs on the installed identity, nothing is moved to
*.pep-previous, the server sees no second identity request, and the identity and credentials
stay byte for byte what boot 1 installed.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import ClassVar

import pytest
from e2e_checks import (
    IDENTITY,
    MCC_CONFIG,
    PROVISION_TIMEOUT,
    edge_core_status,
    endpoint_name,
)
from e2e_gateway import REBOOT_STATUS, Gateway, wait_for
from e2e_testbed import Testbed

# The image's /var/lib below, a temporary upper layer above: written data lives one boot.
VOLATILE_VAR_LIB = "--overlay=+/var/lib::/var/lib"
SETTLE_TIMEOUT = 180.0
# A run that would undo the boot needs a few seconds to stop edge-core after it started;
# edge-core must still answer after this long.
STILL_UP_AFTER = 10.0
STATE_IN_VAR_LIB = "/var/lib/pep-agent"
# The setting that moves the agent's state (journal, marker, lock) away from its default.
STATE_SETTING = "PEP_STATE_DIR"
PREVIOUS = ("/userdata/mbed/mcc_config.pep-previous", "/userdata/edge_gw_config.pep-previous")


def identity_digest(gw: Gateway) -> dict[str, str]:
    """identity.json and every credential file, by path, as sha256 digests."""
    files = [gw.path(IDENTITY), *sorted(p for p in gw.path(MCC_CONFIG).rglob("*") if p.is_file())]
    return {str(p.relative_to(gw.root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in files}


def agent_settled(gw: Gateway) -> str | None:
    """pep-agent.service's state once it is not starting or running any more."""
    state = gw.unit_property("pep-agent.service", "ActiveState")
    return None if state in {"activating", "reloading", "deactivating"} else state


def assert_edge_core_serves(gw: Gateway, serial: str) -> None:
    def connected() -> bool | None:
        if gw.unit_property("pep-agent.service", "ActiveState") == "failed":
            tail = gw.journal("-b", "0", "-u", "pep-agent", "-n", "30", "-q")
            raise AssertionError(f"pep-agent.service failed:\n{tail}")
        if gw.unit_property("edge-core.service", "ActiveState") != "active":
            return None
        try:
            status = edge_core_status(gw)
        except AssertionError:
            return None  # not listening yet
        return True if (status["status"], status["endpoint-name"]) == ("connected",
                                                                        serial) else None

    wait_for(connected, timeout=SETTLE_TIMEOUT, what="edge-core on the installed identity")


def later_boot(testbed: Testbed, digest: dict[str, str], *, server_up: bool = True,
               requests: int = 1) -> None:
    """One boot after the first: the gateway must come up working, with nothing changed.

    `requests`: the identity requests the server's log must hold (one, from boot 1, unless
    the server was restarted since).
    """
    gw = testbed.gw
    gw.boot()
    started = time.monotonic()
    assert_edge_core_serves(gw, testbed.serial)
    if server_up:
        # Without a server the agent may still be asking; edge-core must not wait for it.
        settled = wait_for(lambda: agent_settled(gw), timeout=SETTLE_TIMEOUT,
                           what="pep-agent.service to settle")
        tail = gw.journal("-b", "0", "-u", "pep-agent", "-n", "30", "-q")
        assert settled != "failed", f"pep-agent.service failed on boot {gw.boots}:\n{tail}"
        # A run that confirms the identity ends cleanly: no failed start for systemd to
        # restart (skipped by its condition, the unit's result is a success too).
        assert gw.unit_property("pep-agent.service", "NRestarts") == "0", tail
        assert gw.unit_property("pep-agent.service", "Result") == "success", tail
    time.sleep(max(0.0, STILL_UP_AFTER - (time.monotonic() - started)))
    tail = gw.journal("-b", "0", "-u", "pep-agent", "-n", "30", "-q")
    # Still up: nothing stopped or held edge-core once it had started.
    assert_edge_core_serves(gw, testbed.serial)
    assert gw.unit_property("edge-core.service", "NRestarts") == "0", tail
    for path in PREVIOUS:
        assert not gw.path(path).exists(), f"{path} appeared on boot {gw.boots}:\n{tail}"
    if server_up:
        assert testbed.identity_requests() == requests, f"a new identity request:\n{tail}"
    assert identity_digest(gw) == digest, f"the identity or credentials changed:\n{tail}"
    gw.poweroff()
    # The volatile layer went with the container: the disk still holds no agent state.
    assert not any(gw.path(STATE_IN_VAR_LIB).glob("*"))


def first_boot(testbed: Testbed) -> dict[str, str]:
    """Boot 1 with /var/lib in RAM provisions and reboots; the digest of what it installed."""
    gw = testbed.gw
    gw.boot_options = [VOLATILE_VAR_LIB]
    testbed.start_server()
    gw.boot()
    mounted = gw.run(["findmnt", "-n", "-o", "FSTYPE", "/var/lib"]).stdout.strip()
    assert mounted == "overlay", mounted
    status = gw.wait_exit(PROVISION_TIMEOUT)
    tail = gw.journal("-u", "pep-agent", "-n", "20", "-q")
    assert status == REBOOT_STATUS, f"stopped with {status}, not a reboot:\n{tail}"
    assert json.loads(gw.path(IDENTITY).read_text())["serialNumber"] == testbed.serial
    assert endpoint_name(gw) == testbed.serial
    # What the agent wrote under /var/lib stayed in RAM.
    assert not any(gw.path(STATE_IN_VAR_LIB).glob("*"))
    assert testbed.identity_requests() == 1
    return identity_digest(gw)


@pytest.mark.volatile_var_lib
@pytest.mark.incremental
class TestVolatileVarLib:
    """The agent's state where it belongs by default."""

    digest: ClassVar[dict[str, str]] = {}

    def test_first_boot_provisions_with_var_lib_in_ram(self, testbed: Testbed) -> None:
        type(self).digest = first_boot(testbed)

    @pytest.mark.parametrize("boot", [2, 3, 4])
    def test_later_boot_keeps_the_gateway_working(self, testbed: Testbed, boot: int) -> None:
        assert testbed.gw.boots == boot - 1
        later_boot(testbed, self.digest)


@pytest.mark.volatile_var_lib
@pytest.mark.incremental
class TestStateInVolatileVarLib:
    """The state kept in /var/lib, as the agent's earlier versions did: every later boot finds
    no marker but a complete installed identity, which the server confirms as its own; and
    with no server to ask, the gateway keeps running on it."""

    testbed_options: ClassVar[dict[str, object]] = {
        "settings": {STATE_SETTING: STATE_IN_VAR_LIB}}
    digest: ClassVar[dict[str, str]] = {}

    def test_first_boot_provisions_with_its_state_in_ram(self, testbed: Testbed) -> None:
        type(self).digest = first_boot(testbed)

    def test_second_boot_is_confirmed_by_the_server(self, testbed: Testbed) -> None:
        later_boot(testbed, self.digest)

    def test_third_boot_without_a_server_keeps_the_identity(self, testbed: Testbed) -> None:
        testbed.stop_server()
        later_boot(testbed, self.digest, server_up=False)

    def test_fourth_boot_with_the_server_back(self, testbed: Testbed) -> None:
        # A new server process: its request log starts empty, its records stay.
        testbed.start_server()
        later_boot(testbed, self.digest, requests=0)
