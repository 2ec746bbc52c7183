"""Gateways built differently from the reference image, each provisioned on its first boot.

- The agent installed with pip into /usr/local (a Debian-based gateway): the units find
  /usr/local/bin/pep-agent, there being no /usr/bin/pep-agent.
- edge-core's unit file in /etc/systemd/system (where snapd and hand installs put theirs, and
  where it cannot be masked): edge-core is held while the agent provisions, and afterwards its
  unit file is byte-identical, still enabled, and edge-core runs on the next boot.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import pytest
from e2e_checks import (
    HELD,
    PROVISION_TIMEOUT,
    assert_provisioned_files,
    assert_units_ran,
    edge_core_in_boot,
    no_unit_restarts,
    notify_rejections,
    probes,
    wait_verified,
)
from e2e_gateway import REBOOT_STATUS
from e2e_install import EDGE_CORE_UNIT, ETC_UNITS, GATEWAY_FILES
from e2e_testbed import Testbed

EDGE_CORE_SOURCE = GATEWAY_FILES / "usr/lib/systemd/system" / EDGE_CORE_UNIT


def _first_boot_provisions(testbed: Testbed) -> None:
    gw = testbed.gw
    testbed.start_server()
    gw.boot()
    status = gw.wait_exit(PROVISION_TIMEOUT, watch=lambda: no_unit_restarts(gw))
    assert status == REBOOT_STATUS, f"the gateway stopped with {status}, not a reboot"
    assert_provisioned_files(gw, testbed.serial)
    assert probes(gw) == [HELD], probes(gw)
    assert edge_core_in_boot(gw, 1)[0] == 0, "edge-core ran while the agent provisioned"
    assert notify_rejections(gw) == []


@pytest.mark.incremental
class TestPipInstalledAgent:
    testbed_options: ClassVar[dict[str, bool]] = {"pip": True}

    def test_installed_in_usr_local_only(self, testbed: Testbed) -> None:
        gw = testbed.gw
        assert gw.path("/usr/local/bin/pep-agent").is_file()
        assert not gw.path("/usr/bin/pep-agent").exists()

    def test_first_boot_provisions(self, testbed: Testbed) -> None:
        _first_boot_provisions(testbed)

    def test_second_boot_verifies_with_the_same_units(self, testbed: Testbed) -> None:
        gw = testbed.gw
        gw.boot()
        wait_verified(gw, testbed.serial)
        assert_units_ran(gw, "/usr/local/bin/pep-agent")
        gw.poweroff()


@pytest.mark.incremental
class TestEdgeCoreUnitInEtc:
    testbed_options: ClassVar[dict[str, bool]] = {"edge_core_in_etc": True}

    def _unit(self, testbed: Testbed) -> Path:
        return testbed.gw.path(f"/{ETC_UNITS}/{EDGE_CORE_UNIT}")

    def test_first_boot_provisions(self, testbed: Testbed) -> None:
        unit = self._unit(testbed)
        assert unit.is_file() and not unit.is_symlink()
        assert not testbed.gw.path(f"/usr/lib/systemd/system/{EDGE_CORE_UNIT}").exists()
        _first_boot_provisions(testbed)
        assert unit.read_bytes() == EDGE_CORE_SOURCE.read_bytes(), "edge-core's unit changed"
        assert not unit.is_symlink()

    def test_second_boot_runs_edge_core_from_its_unchanged_unit(self, testbed: Testbed) -> None:
        gw = testbed.gw
        gw.boot()
        wait_verified(gw, testbed.serial)
        assert gw.unit_property(EDGE_CORE_UNIT, "FragmentPath") == f"/{ETC_UNITS}/{EDGE_CORE_UNIT}"
        assert gw.unit_property(EDGE_CORE_UNIT, "UnitFileState") == "enabled"
        assert gw.unit_property(EDGE_CORE_UNIT, "ActiveState") == "active"
        assert gw.unit_property(EDGE_CORE_UNIT, "DropInPaths") == ""
        assert self._unit(testbed).read_bytes() == EDGE_CORE_SOURCE.read_bytes()
        gw.poweroff()
