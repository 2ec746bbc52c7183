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


@pytest.mark.incremental
class TestVolatileVarLib:
    digest: ClassVar[dict[str, str]] = {}

    def test_first_boot_provisions_with_var_lib_in_ram(self, testbed: Testbed) -> None:
        gw = testbed.gw
        gw.boot_options = [VOLATILE_VAR_LIB]
        testbed.start_server()
        gw.boot()
        # The agent's own writes under /var/lib must not reach the gateway's disk.
        marker = gw.run(["findmnt", "-n", "-o", "FSTYPE", "/var/lib"]).stdout.strip()
        assert marker == "overlay", marker
        status = gw.wait_exit(PROVISION_TIMEOUT)
        tail = gw.journal("-u", "pep-agent", "-n", "20", "-q")
        assert status == REBOOT_STATUS, f"stopped with {status}, not a reboot:\n{tail}"
        assert json.loads(gw.path(IDENTITY).read_text())["serialNumber"] == testbed.serial
        assert endpoint_name(gw) == testbed.serial
        assert not any(gw.path("/var/lib/pep-agent").glob("*")), \
            "the agent's state reached the disk below the volatile /var/lib"
        assert testbed.identity_requests() == 1
        type(self).digest = identity_digest(gw)

    @pytest.mark.parametrize("boot", [2, 3, 4])
    def test_later_boot_keeps_the_gateway_working(self, testbed: Testbed, boot: int) -> None:
        gw = testbed.gw
        gw.boot()
        assert gw.boots == boot
        # /var/lib is as empty as at boot 1: nothing the agent wrote there came back.
        assert gw.run(["test", "!", "-e", "/var/lib/pep-agent/provisioned"],
                      check=False).returncode == 0, "the boot kept a marker under /var/lib"
        started = time.monotonic()
        assert_edge_core_serves(gw, testbed.serial)
        settled = wait_for(lambda: agent_settled(gw), timeout=SETTLE_TIMEOUT,
                           what="pep-agent.service to settle")
        tail = gw.journal("-b", "0", "-u", "pep-agent", "-n", "30", "-q")
        assert settled != "failed", f"pep-agent.service failed on boot {boot}:\n{tail}"
        time.sleep(max(0.0, STILL_UP_AFTER - (time.monotonic() - started)))
        # Still up: nothing stopped or held edge-core once it had started.
        assert_edge_core_serves(gw, testbed.serial)
        assert gw.unit_property("edge-core.service", "NRestarts") == "0", tail
        for path in PREVIOUS:
            assert not gw.path(path).exists(), f"{path} appeared on boot {boot}:\n{tail}"
        assert testbed.identity_requests() == 1, f"a second identity request:\n{tail}"
        assert identity_digest(gw) == self.digest, "the identity or credentials changed"
        gw.poweroff()
        assert not gw.running
        # The volatile layer went with the container: the disk still holds no agent state.
        assert not any(gw.path("/var/lib/pep-agent").glob("*"))
        assert gw.path(IDENTITY).is_file()
