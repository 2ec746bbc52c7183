"""The run lock: where it lives (systemd must never delete it) and that it follows no symlink."""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pep_agent.errors import BusyError, StateError
from pep_agent.exit_codes import Exit
from pep_agent.settings.paths import LEGACY_STATE_DIR, Paths
from pep_agent.settings.profiles import PROFILES
from pep_agent.system.lock import RunLock
from tests.agentprocs import free_port, provision

UNITS = Path(__file__).resolve().parents[2] / "systemd"

# Holds the run lock of the root given as argv[1] until its stdin closes.
HOLDER = """
import sys
from pathlib import Path
from pep_agent.settings.paths import LEGACY_STATE_DIR, Paths
from pep_agent.settings.profiles import PROFILES
from pep_agent.system.lock import RunLock
with RunLock(Paths(Path(sys.argv[1])).lock):
    print("held", flush=True)
    sys.stdin.read()
"""


def unit(name: str) -> configparser.SectionProxy:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(UNITS / name)
    return parser["Service"]


def directories_systemd_deletes(service: configparser.SectionProxy) -> list[str]:
    """What systemd removes when the unit stops or restarts: its runtime directories."""
    if service.get("RuntimeDirectoryPreserve", "no") in ("yes", "restart"):
        return []
    return ["/run/" + d for d in service.get("RuntimeDirectory", "").split()]


@pytest.mark.parametrize("name", ["pep-agent.service", "pep-agent-verify.service"])
def test_lock_is_in_a_directory_the_unit_may_write_and_systemd_keeps(name: str) -> None:
    service = unit(name)
    # configparser keeps one of repeated keys: read every ReadWritePaths= line itself.
    writable = ["/var/lib/" + d for d in service.get("StateDirectory", "").split()] + [
        w.lstrip("-") for line in (UNITS / name).read_text().splitlines()
        if line.startswith("ReadWritePaths=") for w in line.split("=", 1)[1].split()]
    for place in [*(p.state_dir for p in PROFILES.values()), LEGACY_STATE_DIR]:
        lock_dir = str(Paths(Path("/"), state_setting=place).lock.parent)
        assert any(lock_dir == w or lock_dir.startswith(w + "/") for w in writable), (
            lock_dir, writable)
        assert lock_dir not in directories_systemd_deletes(service)


@pytest.mark.spawns
def test_a_held_lock_survives_systemd_cleaning_up_after_a_restart(tmp_path: Path) -> None:
    """A manual run holds the lock; the unit exits 21, systemd restarts it and deletes its
    runtime directory: the restarted run must still find the lock held."""
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        doomed = ["/run/pep-agent", *directories_systemd_deletes(unit("pep-agent.service"))]
        for directory in doomed:
            shutil.rmtree(Paths(tmp_path).under(directory), ignore_errors=True)
        with pytest.raises(BusyError), RunLock(Paths(tmp_path).lock):
            pass
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=30)
    # Once the holder is gone, the lock is free again.
    with RunLock(Paths(tmp_path).lock) as lock:
        assert lock.fd is not None


def test_a_symlink_at_the_lock_path_is_refused_and_its_target_untouched(tmp_path: Path) -> None:
    lock_path = Paths(tmp_path).lock
    lock_path.parent.mkdir(parents=True)
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    lock_path.symlink_to(victim)
    with pytest.raises(StateError, match="symbolic link"), RunLock(lock_path):
        pass
    assert victim.read_text() == "precious\n"


@pytest.mark.spawns
def test_provision_refuses_a_symlinked_lock_with_one_line_and_exit_28(tmp_path: Path) -> None:
    root = tmp_path / "root"
    lock_path = Paths(root).lock
    lock_path.parent.mkdir(parents=True)
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    lock_path.symlink_to(victim)
    out = provision(root, f"http://127.0.0.1:{free_port()}", "SN-LOCK", "true")
    assert out.returncode == int(Exit.STATE), out.stderr
    errors = [line for line in out.stderr.splitlines() if "symbolic link" in line]
    assert len(errors) == 1 and "Traceback" not in out.stderr, out.stderr
    assert victim.read_text() == "precious\n"
    assert lock_path.is_symlink()
    assert not Paths(root).journal.exists()
