"""The hold drop-in and the sandbox service manager, on a real temporary root."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from pep_agent.errors import ConfigError, SystemdError
from pep_agent.exit_codes import Exit
from pep_agent.settings.paths import Paths
from pep_agent.system.services import SandboxServices, hold_dropin, make_services

UNIT = "snap.pelion-edge.edge-core.service"
DROPIN = f"run/systemd/system/{UNIT}.d/50-pep-agent-hold.conf"


def test_the_drop_in_is_a_condition_on_itself() -> None:
    text = hold_dropin("/run/systemd/system/x.service.d/50-pep-agent-hold.conf")
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert lines == ["[Unit]",
                     "ConditionPathExists=!/run/systemd/system/x.service.d/50-pep-agent-hold.conf"]


def test_sandbox_hold_writes_the_drop_in_under_the_root_and_records(tmp_path: Path) -> None:
    services = make_services(Paths(tmp_path))
    assert isinstance(services, SandboxServices)
    services.hold(UNIT)
    dropin = tmp_path / DROPIN
    # The condition names the machine path, not the sandbox's.
    assert f"ConditionPathExists=!/{DROPIN}\n" in dropin.read_text()
    assert stat.S_IMODE(dropin.stat().st_mode) == 0o644
    assert stat.S_IMODE(dropin.parent.stat().st_mode) == 0o755
    services.hold(UNIT)  # idempotent: a resumed run holds again
    services.release(UNIT)
    assert not dropin.parent.exists()
    services.release(UNIT)  # nothing left to release: no error
    ops = [line.split(" ", 1)[1] for line in services.log.read_text().splitlines()]
    assert ops == [f"hold {UNIT}", f"hold {UNIT}", f"release {UNIT}", f"release {UNIT}"]


def test_release_leaves_other_drop_ins_alone(tmp_path: Path) -> None:
    services = make_services(Paths(tmp_path))
    services.hold(UNIT)
    other = (tmp_path / DROPIN).parent / "10-site.conf"
    other.write_text("[Service]\nRestartSec=5\n")
    services.release(UNIT)
    assert other.read_text() == "[Service]\nRestartSec=5\n"
    assert not (tmp_path / DROPIN).exists()


@pytest.mark.parametrize("unit", ["", "../../etc/passwd", ".hidden.service", "a/b.service"])
def test_unit_names_that_would_leave_the_unit_directory_are_refused(tmp_path: Path,
                                                                    unit: str) -> None:
    with pytest.raises(ConfigError):
        make_services(Paths(tmp_path)).hold(unit)
    assert not (tmp_path / "run").exists()


def test_an_unwritable_unit_directory_is_a_systemd_error_with_the_fix(tmp_path: Path) -> None:
    (tmp_path / "run/systemd").mkdir(parents=True)
    (tmp_path / "run/systemd/system").write_text("not a directory")
    with pytest.raises(SystemdError) as caught:
        make_services(Paths(tmp_path)).hold(UNIT)
    assert caught.value.code == Exit.SYSTEMD
    assert "ReadWritePaths=/run/systemd/system" in (caught.value.hint or "")
