"""The agent installed from its Debian packages with apt, on Debian bookworm and trixie roots.

Each suite's root holds only that suite's own packages (typer 0.7 on bookworm); apt installs
pep-agent and pep-agent-sim from the .deb files `make deb` builds, and nothing else. Then, as
with the other gateways: the first boot provisions against the simulated server and reboots,
the second verifies, both through the units the package installed and enabled. The package's
units are checked to be the project's, then laid down again by the common harness with the
stand-ins.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
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
    probes,
    wait_verified,
)
from e2e_deb import apt_install, build_debs, cached_suite_root, chroot_run
from e2e_gateway import REBOOT_STATUS, Gateway
from e2e_install import REPO, install_fake_leds, install_units, write_env_file
from e2e_netns import create
from e2e_testbed import Testbed

UNITS = ("pep-agent.service", "pep-agent-verify.service")


class DebTestbed(Testbed):
    """A testbed whose gateway gets the agent from the .deb files, with the root's apt."""

    __test__ = False

    def __init__(self, logs: Path, base: Path, debs: list[Path], serial: str) -> None:
        super().__init__(logs, base, debs[0], serial)
        self.debs = debs
        self.apt: subprocess.CompletedProcess[str] | None = None
        self.enabled_by_package: list[str] = []
        self.units_from_package: dict[str, bytes] = {}

    def set_up(self) -> None:
        self.net = create(self.tag)
        self.gateway = Gateway(f"pepgw-{self.tag}", self.base, self.work / "gateway",
                               self.net.gateway_ns_path)
        self.gateway.mount()
        root = self.gateway.root
        self.apt = apt_install(root, self.debs)
        if self.apt.returncode != 0:
            return  # the first test shows apt's output
        # What the package itself did, before the harness adds the stand-ins and its drop-ins.
        wants = root / "etc/systemd/system/multi-user.target.wants"
        self.enabled_by_package = sorted(p.name for p in wants.glob("pep-agent*"))
        self.units_from_package = {u: (root / "usr/lib/systemd/system" / u).read_bytes()
                                   for u in UNITS}
        (root / "etc/hostname").write_text(f"pepgw-{self.tag}\n")
        (root / "etc/machine-id").write_text(os.urandom(16).hex() + "\n")
        (root / "userdata").mkdir(exist_ok=True)
        install_units(root)
        install_fake_leds(root)
        write_env_file(root, self.settings)


@pytest.fixture(scope="session")
def debs(e2e_dir: Path) -> list[Path]:
    return build_debs(e2e_dir / "debs")


@pytest.fixture(scope="class")
def deb_testbed(request: pytest.FixtureRequest, e2e_dir: Path, debs: list[Path],
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[DebTestbed]:
    suite = request.cls.suite
    base = cached_suite_root(suite, e2e_dir / f"image-{suite}.log")
    name = request.node.name.lower()
    bed = DebTestbed(tmp_path_factory.mktemp(name), base, debs,
                     serial=f"E2E-deb-{suite}-{os.getpid()}")
    try:
        bed.set_up()
        yield bed
    finally:
        bed.close()


@pytest.mark.incremental
class TestDebOnBookworm:
    suite: ClassVar[str] = "bookworm"

    def test_apt_installs_both_packages(self, deb_testbed: DebTestbed) -> None:
        gw = deb_testbed.gw
        apt = deb_testbed.apt
        assert apt is not None and apt.returncode == 0, (apt.stdout + apt.stderr)[-3000:]
        # Nothing fetched from the archive: the suite's own packages were all there already.
        assert "NEW packages will be installed:\n  pep-agent pep-agent-sim\n" in apt.stdout
        for package in ("pep-agent", "pep-agent-sim"):
            state = chroot_run(gw.root, "dpkg-query", "-W", "-f=${Status}", package)
            assert state.stdout == "install ok installed", (package, state)
        assert gw.path("/usr/bin/pep-agent").is_file()
        assert not gw.path("/usr/local/bin/pep-agent").exists()
        # Enabled by the package, never started by it (nothing runs in the chroot anyway:
        # the maintainer scripts hold no start).
        assert deb_testbed.enabled_by_package == sorted(UNITS)
        for unit, body in deb_testbed.units_from_package.items():
            assert body == (REPO / "systemd" / unit).read_bytes(), unit

    def test_commands_run_with_the_suites_libraries(self, deb_testbed: DebTestbed) -> None:
        root = deb_testbed.gw.root
        version = chroot_run(root, "pep-agent", "--version")
        assert (version.returncode, version.stdout) == (0, "pep-agent 0.1.0\n"), version
        status = chroot_run(root, "pep-agent", "status", "--json")
        assert status.returncode == 32, status  # not started yet
        assert '"state": "not-started"' in status.stdout
        helped = chroot_run(root, "pep-agent", "sim", "server", "--help")
        assert helped.returncode == 0 and "--fail-next" in helped.stdout, helped
        typer = chroot_run(root, "dpkg-query", "-W", "-f=${Version}", "python3-typer")
        print(f"{self.suite}: python3-typer {typer.stdout}")
        pip_typer = list(root.glob("usr/local/lib/python3*/dist-packages/typer"))
        assert pip_typer == [], "typer must be the suite's own package"

    def test_first_boot_provisions(self, deb_testbed: DebTestbed) -> None:
        gw = deb_testbed.gw
        deb_testbed.start_server()
        gw.boot()
        status = gw.wait_exit(PROVISION_TIMEOUT, watch=lambda: no_unit_restarts(gw))
        assert status == REBOOT_STATUS, f"the gateway stopped with {status}, not a reboot"
        assert_provisioned_files(gw, deb_testbed.serial)
        assert probes(gw) == [HELD], probes(gw)
        assert edge_core_in_boot(gw, 1)[0] == 0, "edge-core ran while the agent provisioned"

    def test_second_boot_verifies(self, deb_testbed: DebTestbed) -> None:
        gw = deb_testbed.gw
        gw.boot()
        wait_verified(gw, deb_testbed.serial)
        assert_units_ran(gw, "/usr/bin/pep-agent")
        gw.poweroff()


class TestDebOnTrixie(TestDebOnBookworm):
    suite: ClassVar[str] = "trixie"
