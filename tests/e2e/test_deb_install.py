"""The agent installed from its Debian packages with apt, on Debian bookworm and trixie roots.

Each suite's root holds only that suite's own packages (typer 0.7 on bookworm); apt installs
pep-agent and pep-agent-sim from the .deb files `make deb` builds in a fresh root of the same
suite (which installs its build dependencies itself and passes lintian), and nothing else. Then, as
with the other gateways: the first boot provisions against the simulated server and reboots,
the second verifies, both through the units the package installed and enabled. The package's
units are checked to be the project's, in the place the suite's debhelper puts units, then
laid down again by the common harness with the stand-ins. The package's settings file chooses
the debian profile, and the gateway keeps that choice: the harness adds its own settings
below it, and the stand-in edge-core reads the credentials in the debian profile's place.

On bookworm, the package is also removed while a run waits for the server's answer after the
injection: its prerm stops the run, which keeps the credentials FCC stored; installed again,
the next boot ends provisioned with the one identity the server made. Purged then, it takes
the settings file and the units' empty StateDirectory= with it, and leaves the identity and
the agent's markers.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import ClassVar
from urllib.parse import quote

import pytest
from e2e_checks import (
    ENDPOINT_FILE,
    HELD,
    PROVISION_TIMEOUT,
    assert_provisioned_files,
    assert_units_ran,
    edge_core_in_boot,
    endpoint_name,
    no_unit_restarts,
    probes,
    wait_verified,
)
from e2e_deb import apt_install, build_debs, cached_suite_root, chroot_run
from e2e_gateway import REBOOT_STATUS, Gateway, wait_for
from e2e_install import REPO, install_fake_leds, install_units
from e2e_netns import create
from e2e_testbed import Testbed

from pep_agent.settings.profiles import get_profile

UNITS = ("pep-agent.service", "pep-agent-verify.service")
DEBIAN = get_profile("debian")
# Where each suite's debhelper installs units (trixie's lintian rejects /lib: aliased-location).
UNIT_DIRS = {"bookworm": "/lib/systemd/system", "trixie": "/usr/lib/systemd/system"}
# The edge packages own /var/lib/pelion on a Debian gateway; the units open it for writing
# only when it exists.
PELION = "/var/lib/pelion"
# Long enough to remove the package while the server holds its answer.
ANSWER_HELD = 90.0


class DebTestbed(Testbed):
    """A testbed whose gateway gets the agent from the .deb files, with the root's apt."""

    __test__ = False

    def __init__(self, logs: Path, base: Path, debs: list[Path], serial: str) -> None:
        super().__init__(logs, base, debs[0], serial)
        self.debs = debs
        self.apt: subprocess.CompletedProcess[str] | None = None
        self.enabled_by_package: list[str] = []
        self.units_from_package: dict[str, bytes] = {}
        self.package_files: list[str] = []
        self.package_settings = ""

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
        self.package_files = chroot_run(root, "dpkg-query", "-L", "pep-agent").stdout.split()
        settings = root / "etc/default/pep-agent"
        self.package_settings = settings.read_text()
        (root / "etc/hostname").write_text(f"pepgw-{self.tag}\n")
        (root / "etc/machine-id").write_text(os.urandom(16).hex() + "\n")
        (root / "userdata").mkdir(exist_ok=True)
        (root / PELION.lstrip("/")).mkdir(parents=True, exist_ok=True)
        install_units(root)
        install_fake_leds(root)
        dropin = root / "etc/systemd/system/edge-core.service.d"
        dropin.mkdir(parents=True, exist_ok=True)
        (dropin / "50-debian-profile.conf").write_text(
            f"[Service]\nEnvironment=PEP_E2E_MCC_CONFIG={DEBIAN.mcc_config}\n")
        # The package's file, its profile included, then the test's settings.
        added = [f"{k}={v}" for k, v in self.settings.items() if k != "PEP_PROFILE"]
        settings.write_text(self.package_settings + "\n# Added by the virtual-gateway tests.\n"
                            + "\n".join(added) + "\n")

    def run_apt(self, *argv: str) -> subprocess.CompletedProcess[str]:
        """apt-get inside the booted gateway (so that maintainer scripts see its systemd)."""
        return self.gw.run(["apt-get", "-y", "--no-install-recommends", *argv], check=False,
                           timeout=300, env={"DEBIAN_FRONTEND": "noninteractive"})

    def copy_debs_in(self) -> list[str]:
        names = []
        for deb in self.debs:
            target = self.gw.path(f"/var/tmp/{deb.name}")
            target.write_bytes(deb.read_bytes())
            names.append(f"/var/tmp/{deb.name}")
        return names


@pytest.fixture(scope="session")
def debs(e2e_dir: Path) -> Callable[[str], list[Path]]:
    """The packages built in a fresh root of the given suite, once per suite and session."""
    built: dict[str, list[Path]] = {}

    def for_suite(suite: str) -> list[Path]:
        if suite not in built:
            built[suite] = build_debs(suite, e2e_dir / f"debs-{suite}")
        return built[suite]

    return for_suite


@pytest.fixture(scope="class")
def deb_testbed(request: pytest.FixtureRequest, e2e_dir: Path,
                debs: Callable[[str], list[Path]],
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[DebTestbed]:
    suite = request.cls.suite
    base = cached_suite_root(suite, e2e_dir / f"image-{suite}.log")
    name = request.node.name.lower()
    bed = DebTestbed(tmp_path_factory.mktemp(name), base, debs(suite),
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
            assert f"{UNIT_DIRS[self.suite]}/{unit}" in deb_testbed.package_files
        # A Debian gateway gets the debian profile's places unless told otherwise.
        assert "\nPEP_PROFILE=debian\n" in deb_testbed.package_settings

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
        assert_provisioned_files(gw, deb_testbed.serial, DEBIAN)
        assert not gw.path("/userdata/pep-agent").exists(), "state in the lmp profile's place"
        assert probes(gw) == [HELD], probes(gw)
        assert edge_core_in_boot(gw, 1)[0] == 0, "edge-core ran while the agent provisioned"

    def test_second_boot_verifies(self, deb_testbed: DebTestbed) -> None:
        gw = deb_testbed.gw
        gw.boot()
        wait_verified(gw, deb_testbed.serial, DEBIAN)
        assert_units_ran(gw, "/usr/bin/pep-agent")
        status = gw.run(["pep-agent", "status", "--json"])
        shown = json.loads(status.stdout)
        assert (shown["profile"], shown["state"], shown["provisioned"]) == (
            "debian", "verified", True), shown
        gw.poweroff()


class TestDebOnTrixie(TestDebOnBookworm):
    suite: ClassVar[str] = "trixie"


@pytest.mark.incremental
class TestDebRemovedAfterInjection:
    """apt removes the package while the server holds its answer to an injection."""

    suite: ClassVar[str] = "bookworm"

    def test_removal_stops_the_run_and_keeps_the_credentials(self,
                                                             deb_testbed: DebTestbed) -> None:
        gw = deb_testbed.gw
        apt = deb_testbed.apt
        assert apt is not None and apt.returncode == 0, (apt.stdout + apt.stderr)[-3000:]
        deb_testbed.start_server()
        deb_testbed.set_faults(answer_delay=ANSWER_HELD)
        gw.boot()
        record = f"/v3/enrollment-id?serialNumber={quote(deb_testbed.serial)}"
        wait_for(lambda: True if deb_testbed.server_call("GET", record)[0] == 200 else None,
                 timeout=PROVISION_TIMEOUT, what="the server's injection")
        staged = gw.path(f"{PELION}/mbed/.pep-agent-staging")
        wait_for(lambda: True if any(staged.glob(f"**/WORKING/{ENDPOINT_FILE}")) else None,
                 timeout=60, what="the credentials FCC stored")
        removed = deb_testbed.run_apt("remove", "pep-agent-sim", "pep-agent")
        assert removed.returncode == 0, removed.stdout + removed.stderr
        # The prerm stopped the run (systemd's stop job waited for it to end), which ended
        # with SIGTERM's status and kept what FCC stored.
        assert gw.unit_property("pep-agent.service", "ActiveState") in ("inactive", "failed")
        assert gw.unit_property("pep-agent.service", "ExecMainStatus") == "143"
        assert not gw.path("/usr/bin/pep-agent").exists()
        assert any(staged.glob(f"**/WORKING/{ENDPOINT_FILE}")), "the credentials were lost"
        assert not gw.path(DEBIAN.identity_json).exists()
        assert gw.path(f"{DEBIAN.state_dir}/state.json").is_file()
        deb_testbed.set_faults(answer_delay=0)

    def test_installed_again_the_next_boot_recovers(self, deb_testbed: DebTestbed) -> None:
        gw = deb_testbed.gw
        installed = deb_testbed.run_apt("install", *deb_testbed.copy_debs_in())
        assert installed.returncode == 0, installed.stdout + installed.stderr
        gw.poweroff()
        gw.boot()
        status = gw.wait_exit(PROVISION_TIMEOUT)
        tail = gw.journal("-u", "pep-agent", "-n", "20", "-q")
        assert status == REBOOT_STATUS, f"stopped with {status}, not a reboot:\n{tail}"
        # No identity wasted: the one the server made is the one installed.
        assert deb_testbed.identity_requests() == 1, tail
        assert_provisioned_files(gw, deb_testbed.serial, DEBIAN)
        code, text = deb_testbed.server_call("GET", "/v3/enrollment-ids?limit=1000")
        assert code == 200, text
        records = json.loads(text)["results"]
        assert [(r["serialNumber"], r["deployed"]) for r in records] == [
            (deb_testbed.serial, True)]
        identity = json.loads(gw.path(DEBIAN.identity_json).read_text())
        assert identity["enrollmentID"] == records[0]["enrollmentID"]

    def test_purge_keeps_the_gateways_identity(self, deb_testbed: DebTestbed) -> None:
        gw = deb_testbed.gw
        gw.boot()
        wait_verified(gw, deb_testbed.serial, DEBIAN)
        # The units' StateDirectory=, made at their start; empty with the debian profile.
        assert gw.path("/var/lib/pep-agent").is_dir()
        purged = deb_testbed.run_apt("purge", "pep-agent-sim", "pep-agent")
        assert purged.returncode == 0, purged.stdout + purged.stderr
        assert not gw.path("/var/lib/pep-agent").exists()
        assert not gw.path("/etc/default/pep-agent").exists()
        # What the run made is the gateway's: the package leaves it.
        assert gw.path(f"{DEBIAN.state_dir}/provisioned").read_text().strip() == \
            deb_testbed.serial
        assert gw.path(DEBIAN.identity_json).is_file()
        assert endpoint_name(gw, f"{DEBIAN.mcc_config}/WORKING") == deb_testbed.serial
        gw.poweroff()
