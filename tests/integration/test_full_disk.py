"""A full /userdata on a real, small file system (a size-limited tmpfs mounted for the test):
the agent refuses to start FCC without room for its credentials, before anything is changed,
and says "disk space" (not "check that FCC runs") when FCC itself fails to store them.

Needs root (mount); skipped otherwise. Every mount is undone by the fixture.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pep_agent.exit_codes import Exit
from tests.agentprocs import agent_env, provision, service_log, status
from tests.endstate import (
    IDENTITY,
    MCC,
    OLD_SERIAL,
    STATE_DIR,
    assert_no_wasted_identity,
    end_state,
    identity_requests,
    seed_old_identity,
)
from tests.simprocs import SimServer, fcc_argv, fcc_command, start_server

DISK_KB = 768
# Leaves `kb` kB free on the file system of argv[1] by writing argv[1] (replaced if there).
FILL = """\
import os, sys
path, kb = sys.argv[1], int(sys.argv[2])
if os.path.exists(path):
    os.remove(path)
st = os.statvfs(os.path.dirname(path))
size = st.f_bavail * st.f_frsize - kb * 1024
with open(path, "wb") as f:
    f.write(bytes(max(size, 0)))
"""


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    """A DISK_KB tmpfs mounted on a fresh folder; unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small file system needs root")
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DISK_KB}k,mode=0755", "tmpfs",
                           str(mount)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[SimServer]:
    srv = start_server(tmp_path / "server")  # on the big disk: only the gateway is full
    yield srv
    srv.stop()


def fill(path: Path, leave_kb: int) -> None:
    subprocess.run([sys.executable, "-c", FILL, str(path), str(leave_kb)], check=True)


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and STATE_DIR not in str(p)}


@pytest.mark.parametrize("leave_kb", [24, 96])
def test_no_room_for_fcc_is_refused_before_anything_changes(disk: Path, server: SimServer,
                                                            leave_kb: int) -> None:
    root, serial = disk / "gw", f"GW-FULL-{leave_kb}"
    seed_old_identity(root)
    before = _tree(root)
    fill(disk / "filler", leave_kb)
    out = provision(root, server.url, serial, fcc_command())
    assert out.returncode == Exit.NO_SPACE, out.stderr
    folder = root / MCC.rsplit("/", 1)[0]
    said = re.search(r"error: not enough free space for FCC's credentials: (\S+) has (\d+) kB "
                     r"free, FCC and the identity need about (\d+) kB", out.stderr)
    assert said, out.stderr
    # Its own journal and lock took a few kB of what the test left.
    assert said[1] == str(folder) and int(said[2]) <= leave_kb < int(said[3])
    assert "nothing was changed" in out.stderr
    assert "hint: free at least " in out.stderr and f"`df -k {folder}`" in out.stderr
    # Nothing changed: the old identity in place, edge-core never held, nothing requested.
    assert _tree(root) == before
    assert not list(root.rglob("*.pep-previous"))
    assert not [line for line in service_log(root) if "edge-core" in line]
    assert identity_requests(server, serial) == []
    assert status(root)["error"]["code"] == Exit.NO_SPACE
    # Space freed: the next run (the unit restarts it) provisions.
    (disk / "filler").unlink()
    out = provision(root, server.url, serial, fcc_command())
    assert out.returncode == 0, out.stderr
    assert end_state(root, server, serial) == "provisioned"
    assert assert_no_wasted_identity(server, {serial: root}, previous=OLD_SERIAL) == {
        serial: "installed"}


@pytest.mark.parametrize("retries", ["", "0"], ids=["default-retries", "no-retries"])
def test_fccs_own_storage_error_is_reported_as_disk_space(disk: Path, server: SimServer,
                                                          retries: str) -> None:
    """The disk fills after the agent's check (another writer): FCC cannot store the items.
    The agent reads FCC's storage error: it names the disk space, with no FCC restarts (a
    restarted FCC would fail the same way) and nothing wasted; with no restarts allowed too."""
    root, serial = disk / "gw", f"GW-FULL-LATE-{retries or 'd'}"
    filler = [sys.executable, "-c", FILL, str(disk / "filler"), "40"]
    fcc = shlex.join(["sh", "-c", f"{shlex.join(filler)} && exec {shlex.join(fcc_argv())}"])
    out = provision(root, server.url, serial, fcc,
                    env=agent_env(**({"PEP_INJECTION_RETRIES": retries} if retries else {})))
    assert out.returncode == Exit.NO_SPACE, out.stderr
    assert "FCC could not store the credentials (its error: '[ERR" in out.stderr
    assert "check that FCC runs" not in out.stderr
    folder = root / MCC.rsplit("/", 1)[0]
    assert f"{folder} has " in out.stderr and "kB free, FCC and the identity need" in out.stderr
    assert len(identity_requests(server, serial)) == 1
    assert not (root / IDENTITY).exists() and not (root / STATE_DIR / "provisioned").exists()
    assert assert_no_wasted_identity(server, {serial: root}) == {serial: "unprovisioned"}
