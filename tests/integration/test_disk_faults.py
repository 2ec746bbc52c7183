"""Disk faults for real: a read-only /userdata, a full gateway root file system, and an
identity folder that turns read-only in the middle of the install.

The file systems exist only inside a private mount namespace that a holder process keeps
alive (`unshare -m`); agents run inside it through `nsenter -m`, and the test reads the
namespace's files through /proc/<holder>/root. Nothing is mounted on the host. Needs root.
"""

from __future__ import annotations

import errno
import os
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from pep_agent.system import proc
from tests.agentprocs import agent_env, provision
from tests.endstate import (
    IDENTITY,
    MCC,
    STATE_DIR,
    assert_no_wasted_identity,
    end_leftover,
    end_state,
    fcc_process,
    identity_requests,
    journal,
    provision_argv,
    start_agent,
    wait_until,
)
from tests.simprocs import LineReader, SimServer, fcc_command, start_server

TMPFS_SIZE = "4m"  # ample for one run; the tests fill it up on purpose
HOLDER_READY = 30.0


def _missing_requirement() -> str | None:
    if os.geteuid() != 0:
        return "mounting file systems in a private namespace needs root"
    for tool in ("unshare", "nsenter", "mount"):
        if shutil.which(tool) is None:
            return f"{tool} (util-linux) is not installed"
    return None


pytestmark = pytest.mark.skipif(_missing_requirement() is not None,
                                reason=_missing_requirement() or "")


class Namespace:
    """A private mount namespace kept alive by `sleep`, prepared by a shell script."""

    def __init__(self, setup: str) -> None:
        script = f"set -e\n{setup}\necho namespace-ready\nexec sleep 600"
        self.process = proc.spawn(["unshare", "-m", "--propagation", "private",
                                   "sh", "-c", script])
        assert self.process.stdout is not None
        self.output = LineReader(self.process.stdout)
        if self.output.wait_for("^namespace-ready$", HOLDER_READY) is None:
            text = self.output.text()
            self.close()
            pytest.skip(f"cannot prepare a private mount namespace here: {text.strip()}")

    def view(self, path: Path) -> Path:
        """`path` as processes inside the namespace see it."""
        return Path(f"/proc/{self.process.pid}/root") / path.relative_to("/")

    def argv(self, argv: list[str]) -> list[str]:
        return ["nsenter", "-t", str(self.process.pid), "-m", "--", *argv]

    def close(self) -> None:
        proc.stop(self.process, grace=5.0)
        self.output.close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[SimServer]:
    srv = start_server(tmp_path / "server")
    yield srv
    srv.stop()


def tmpfs_on(root: Path) -> str:
    """The namespace set-up that puts the whole gateway root on a small tmpfs."""
    return f"mount -t tmpfs -o size={TMPFS_SIZE},mode=0755 tmpfs {shlex.quote(str(root))}"


def fill(directory: Path) -> Path:
    """Write one file until the file system has no space left; returns that file."""
    filler = directory / "filler"
    chunk = b"\0" * 65536
    with filler.open("wb", buffering=0) as f:
        for _ in range(1_000_000):  # bounded; a 4 MiB tmpfs fills after 64 chunks
            try:
                f.write(chunk)
            except OSError as e:
                assert e.errno == errno.ENOSPC, e
                break
        else:
            pytest.fail(f"{directory} never filled up")
    return filler


def run_inside(ns: Namespace, root: Path, server: SimServer, serial: str,
               fcc: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(ns.argv(provision_argv(root, server.url, serial, fcc)),
                          capture_output=True, text=True, timeout=120, env=env,
                          stdin=subprocess.DEVNULL, check=False)


def assert_failed_cleanly(out: subprocess.CompletedProcess[str], hint: str) -> None:
    assert out.returncode == 18, f"exit {out.returncode}, expected 18:\n{out.stderr}"
    assert hint in out.stderr, out.stderr
    assert "Traceback" not in out.stderr, out.stderr


def test_read_only_userdata(tmp_path: Path, server: SimServer) -> None:
    """/userdata is read-only: exit 18 with the hint, the serial is not spent on the server,
    and once /userdata is writable again a rerun finishes."""
    root, serial = tmp_path / "gw", "GW-RO-USERDATA"
    userdata = root / "userdata"
    userdata.mkdir(parents=True)
    where = shlex.quote(str(userdata))
    ns = Namespace(f"mount --bind {where} {where}\nmount -o remount,bind,ro {where}")
    try:
        out = run_inside(ns, root, server, serial, fcc_command(), agent_env())
        assert_failed_cleanly(out, "read-only")
        assert end_state(root, server, serial) == "not-provisioned"
        assert_no_wasted_identity(server, {serial: root})
        # FCC stages its credentials under /userdata, so this fails before the server is
        # asked; asking first would spend the serial on a gateway that cannot install it.
        assert identity_requests(server, serial) == []
    finally:
        ns.close()
    assert fcc_process(journal(root)) is None
    rerun = provision(root, server.url, serial, fcc_command())
    assert rerun.returncode == 0, rerun.stderr
    assert end_state(root, server, serial) == "provisioned"
    assert_no_wasted_identity(server, {serial: root})
    assert len(identity_requests(server, serial)) == 1


def test_full_disk_before_the_run(tmp_path: Path, server: SimServer) -> None:
    """No space at all: exit 18 with the hint, the server is never asked."""
    root, serial = tmp_path / "gw", "GW-FULL-EARLY"
    root.mkdir()
    ns = Namespace(tmpfs_on(root))
    try:
        view = ns.view(root)
        filler = fill(view)
        out = run_inside(ns, root, server, serial, fcc_command(), agent_env())
        assert_failed_cleanly(out, "disk is full")
        assert not (view / IDENTITY).exists() and not (view / MCC).exists()
        assert identity_requests(server, serial) == []
        filler.unlink()
        rerun = run_inside(ns, root, server, serial, fcc_command(), agent_env())
        assert rerun.returncode == 0, rerun.stderr
        assert end_state(view, server, serial) == "provisioned"
        assert_no_wasted_identity(server, {serial: view})
    finally:
        ns.close()


def test_full_disk_after_the_server_answered(tmp_path: Path, server: SimServer) -> None:
    """The disk fills while FCC finishes, after the commit point: exit 18, then resume."""
    root, serial = tmp_path / "gw", "GW-FULL-LATE"
    root.mkdir()
    release = tmp_path / "release-fcc"
    ns = Namespace(tmpfs_on(root))
    agent = None
    try:
        view = ns.view(root)
        env = agent_env(PEP_SIM_FCC_RELEASE=str(release), PEP_FCC_EXIT_TIMEOUT="60")
        agent = start_agent(ns.argv(provision_argv(root, server.url, serial,
                                                   fcc_command(fault="pause-after-exchange"))),
                            tmp_path / "agent", env)
        wait_until("the agent waits for FCC after the server's answer",
                   lambda: journal(view).get("step") == "wait-fcc", 60, alive=agent.process)
        fcc = fcc_process(journal(view))
        filler = fill(view)
        release.touch()
        code = agent.wait(90)
        end_leftover(fcc)
        assert code == 18, f"exit {code}, expected 18:\n{agent.err()}"
        assert "disk is full" in agent.err() and "Traceback" not in agent.err(), agent.err()
        assert end_state(view, server, serial) == "not-provisioned"
        assert_no_wasted_identity(server, {serial: view})
        filler.unlink()
        rerun = run_inside(ns, root, server, serial, fcc_command(), agent_env())
        assert rerun.returncode == 0, rerun.stderr
        assert end_state(view, server, serial) == "provisioned"
        assert_no_wasted_identity(server, {serial: view})
        assert len(identity_requests(server, serial)) == 1
    finally:
        if agent is not None:
            agent.kill()
        ns.close()
    assert not (root / STATE_DIR).exists(), "the tmpfs leaked out of its namespace"


def test_identity_folder_turns_read_only_during_the_install(tmp_path: Path,
                                                            server: SimServer) -> None:
    """mcc_config can be swapped in but identity.json cannot be written: no half-install."""
    root, serial = tmp_path / "gw", "GW-RO-HALFWAY"
    (root / "userdata").mkdir(parents=True)
    release = tmp_path / "release-fcc"
    ns = Namespace("true")
    agent = None
    try:
        env = agent_env(PEP_SIM_FCC_RELEASE=str(release), PEP_FCC_EXIT_TIMEOUT="60")
        agent = start_agent(ns.argv(provision_argv(root, server.url, serial,
                                                   fcc_command(fault="pause-after-exchange"))),
                            tmp_path / "agent", env)
        wait_until("the agent waits for FCC after the server's answer",
                   lambda: journal(root).get("step") == "wait-fcc", 60, alive=agent.process)
        folder = (root / IDENTITY).parent
        folder.mkdir()
        where = shlex.quote(str(folder))
        subprocess.run(ns.argv(["sh", "-c", f"mount --bind {where} {where} && "
                                            f"mount -o remount,bind,ro {where}"]),
                       check=True, timeout=30, stdin=subprocess.DEVNULL)
        release.touch()
        code = agent.wait(90)
        assert code == 18, f"exit {code}, expected 18:\n{agent.err()}"
        assert "read-only" in agent.err(), agent.err()
        assert end_state(root, server, serial) == "not-provisioned"
        assert_no_wasted_identity(server, {serial: root})
    finally:
        if agent is not None:
            agent.kill()
        ns.close()
    rerun = provision(root, server.url, serial, fcc_command())
    assert rerun.returncode == 0, rerun.stderr
    assert end_state(root, server, serial) == "provisioned"
    assert_no_wasted_identity(server, {serial: root})
    assert len(identity_requests(server, serial)) == 1


def test_full_state_disk_when_the_answer_arrives(tmp_path: Path, server: SimServer) -> None:
    """Issue 9, case 4: the state disk fills while the 200 is in flight. The answer cannot be
    saved nor the journal written, yet the identity is installed from memory; the marker
    cannot be written either (exit 18), and the rerun finishes without asking the server."""
    root, serial = tmp_path / "gw", "GW-FULL-STATE"
    state_dir = root / STATE_DIR
    state_dir.mkdir(parents=True)
    ns = Namespace(f"mount -t tmpfs -o size=1m,mode=0700 tmpfs {shlex.quote(str(state_dir))}")
    agent = None
    try:
        view = ns.view(root)
        server.set_faults(delay=2)
        agent = start_agent(ns.argv(provision_argv(root, server.url, serial, fcc_command())),
                            tmp_path / "agent", agent_env())
        wait_until("the identity request reaches the server",
                   lambda: len(identity_requests(server, serial)) >= 1, 60,
                   alive=agent.process)
        filler = fill(view / STATE_DIR)
        code = agent.wait(90)
        assert code == 18, f"exit {code}, expected 18:\n{agent.err()}"
        assert "installing it directly" in agent.err() and "Traceback" not in agent.err()
        assert (view / IDENTITY).exists(), "the answer held in memory was not installed"
        assert assert_no_wasted_identity(server, {serial: view}) == {serial: "installed"}
        filler.unlink()
        server.set_faults(delay=0)
        rerun = run_inside(ns, root, server, serial, fcc_command(), agent_env())
        assert rerun.returncode == 0, rerun.stderr
        assert end_state(view, server, serial) == "provisioned"
        assert len(identity_requests(server, serial)) == 1
        assert assert_no_wasted_identity(server, {serial: view}) == {serial: "installed"}
    finally:
        if agent is not None:
            agent.kill()
        ns.close()
