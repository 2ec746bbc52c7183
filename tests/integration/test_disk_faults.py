"""Disk faults for real: a read-only /userdata, a full gateway root file system, and an
identity folder that turns read-only in the middle of the install.

The file systems exist only inside a private mount namespace that a holder process keeps
alive (`unshare -m`); agents run inside it through `nsenter -m`, and the test reads the
namespace's files through /proc/<holder>/root. Nothing is mounted on the host. Needs root.
"""

from __future__ import annotations

import errno
import os
import random
import re
import shlex
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from pep_agent.system import proc
from tests.agentprocs import agent_env, provision
from tests.crash import explore, fsmodel, trace
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
from tests.simprocs import LineReader, SimServer, fcc_command

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


def assert_failed_cleanly(out: subprocess.CompletedProcess[str], hint: str,
                          code: int = 18) -> None:
    assert out.returncode == code, f"exit {out.returncode}, expected {code}:\n{out.stderr}"
    assert hint in out.stderr, out.stderr
    assert "Traceback" not in out.stderr, out.stderr


def test_read_only_userdata(tmp_path: Path, server: SimServer) -> None:
    """/userdata is read-only: the agent's state there cannot be written (exit 28, with the
    hint), the serial is not spent on the server,
    and once /userdata is writable again a rerun finishes."""
    root, serial = tmp_path / "gw", "GW-RO-USERDATA"
    userdata = root / "userdata"
    userdata.mkdir(parents=True)
    where = shlex.quote(str(userdata))
    ns = Namespace(f"mount --bind {where} {where}\nmount -o remount,bind,ro {where}")
    try:
        out = run_inside(ns, root, server, serial, fcc_command(), agent_env())
        assert_failed_cleanly(out, "read-only", code=28)
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
    """No space at all: the agent's state cannot be written (exit 28, with the hint), the
    server is never asked."""
    root, serial = tmp_path / "gw", "GW-FULL-EARLY"
    root.mkdir()
    ns = Namespace(tmpfs_on(root))
    try:
        view = ns.view(root)
        filler = fill(view)
        out = run_inside(ns, root, server, serial, fcc_command(), agent_env())
        assert_failed_cleanly(out, "disk is full", code=28)
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
                   lambda: journal(view).get("step") == "wait-fcc", 60, alive=agent)
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
                   lambda: journal(root).get("step") == "wait-fcc", 60, alive=agent)
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
    """The state disk fills while the 200 is in flight. The answer cannot be
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
                   alive=agent)
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


# --- system-call error injection --------------------------------------------------------------
# Each durable-state system call of a recorded provision, in turn, fails with EIO or ENOSPC
# (`strace -e inject=CALL:error=E:when=N`), then a plain rerun without faults follows. The
# sample size, seed and full run are the crash-state explorer's settings (PEP_CRASH_*).

INJECTABLE = ("openat", "write", "ftruncate", "fsync", "fdatasync", "rename", "unlink",
              "unlinkat", "mkdir", "rmdir", "fchmod", "chmod", "symlink", "sync")
ERRORS = ("EIO", "ENOSPC")
MISSED = "missed"
OFF_TARGET = "off target"
_TMP_NAME = re.compile(r"\.[A-Za-z0-9_]{8}\.tmp$")
FAULT_SEED = int(os.environ.get("PEP_CRASH_SEED", "14"))
FAULT_FULL = os.environ.get("PEP_CRASH_FULL") == "1"
FAULT_SAMPLE = int(os.environ.get("PEP_CRASH_SAMPLE", "0" if FAULT_FULL else "3"))


@dataclass(frozen=True)
class Target:
    """The `nth` call of `name` in the agent's own process, which touched `path`."""

    name: str
    nth: int
    path: str


def touched(call: trace.Call, root: str) -> str | None:
    """The path under root a call touched, relative, temporary names' random part masked;
    "(all)" for sync(); None when it touched nothing under root."""
    if call.name == "sync":
        return "(all)"
    paths = [p for p in (trace.fd_path(a) for a in call.args) if p]
    paths += [trace.path_arg(a) for a in call.args if a.startswith('"') and "\\x2f" in a]
    if call.result_path:
        paths.append(trace.unhex(call.result_path).decode(errors="replace"))
    for path in paths:
        if path == root or path.startswith(root + "/"):
            return _TMP_NAME.sub(".*.tmp", path[len(root):])
    return None


def syscall_targets(rec: explore.Recording, log: str) -> list[Target]:
    """The agent process's calls that touched a file under the recorded root."""
    calls = trace.parse(log)
    main = calls[0].pid
    counts: dict[str, int] = {}
    targets = []
    for call in calls:
        if call.pid != main or call.name not in INJECTABLE:
            continue
        counts[call.name] = counts.get(call.name, 0) + 1
        rel = touched(call, str(rec.root))
        if rel is not None:
            targets.append(Target(call.name, counts[call.name], rel))
    return targets


def durable_view(root: Path, log: Path, into: Path) -> Path:
    """The tree a power cut right after the run would leave without metadata ordering."""
    umask = os.umask(0)
    os.umask(umask)
    recorder = fsmodel.Recorder(root, fsmodel.snapshot_empty(), umask)
    for call in trace.parse(log.read_text()):
        recorder.feed(call)
    initial = {**fsmodel.snapshot_empty(), **recorder.born}
    last = len(recorder.ops)
    durable = fsmodel.durable_at(recorder.ops)
    tree = fsmodel.build(initial, recorder.ops, last, lambda i: durable[i] < last, False)
    fsmodel.materialize(tree, into)
    return into


def inject_once(rec: explore.Recording, target: Target, error: str, server: SimServer,
                work: Path) -> str:
    """One faulted provision and its rerun: the problem, "" when it ended well, MISSED when
    the run never made that call (its path differed from the recording's)."""
    scenario = explore.Scenario("plain", "o-sync")
    serial = f"GW-FAULT-{target.name}-{target.nth}-{error}"
    root = (work / "gw").resolve()
    root.mkdir(parents=True)
    log = work / "strace.log"
    argv = [*explore.strace_argv(log, "-e",
                                 f"inject={target.name}:error={error}:when={target.nth}"),
            *provision_argv(root, server.url, serial, scenario.fcc(root)), "--no-parsec"]
    faulted = subprocess.run(argv, capture_output=True, text=True, timeout=180,
                             env=agent_env(**explore.TRACED), stdin=subprocess.DEVNULL,
                             check=False)
    what = f"{error} into {target.name} #{target.nth} ({target.path}): exit {faulted.returncode}"
    calls = trace.parse(log.read_text())
    injected = [c for c in calls if c.injected and c.pid == calls[0].pid]
    if not injected:
        return MISSED
    # strace counts calls per process: FCC's own call of that number fails too, when it makes
    # that many. The agent then quotes FCC's last lines (a traceback of FCC's) in its hint.
    fcc_hit = any(c.injected and c.pid != calls[0].pid for c in calls)
    if "Traceback" in faulted.stderr and not fcc_hit:
        return f"{what}: a traceback ending in {faulted.stderr.strip().splitlines()[-1][:120]}"
    hit = touched(injected[0], str(root))
    if hit != target.path:
        # The run took another path (e.g. one more poll) and the fault hit another call: still
        # a fault to survive, judged below, but counted apart.
        what += f", hit {injected[0].name} on {hit}"
    if faulted.returncode == 0:
        view = durable_view(root, log, work / "durable")
        if not (view / explore.MARKER).exists():
            return f"{what}: exit 0, but the marker is not durable"
        problems = explore.credentials_problems(view, parsec=False)
        if problems:
            return f"{what}: exit 0, but not durable: {'; '.join(problems[:3])}"
    rerun = provision(root, server.url, serial, scenario.fcc(root))
    try:
        end_state(root, server, serial)
        assert_no_wasted_identity(server, {serial: root})
    except AssertionError as e:
        failed = (str(e).splitlines() or [f"an assertion of tests/endstate.py: {e!r}"])[0]
        return f"{what}; rerun exit {rerun.returncode}: {failed}"
    return OFF_TARGET if hit != target.path else ""


@pytest.mark.timeout(0 if FAULT_FULL else 120)
def test_syscall_errors_in_every_durable_call(tmp_path: Path, server: SimServer) -> None:
    """EIO and ENOSPC into each durable-state call of a provision, then a plain rerun: every
    case ends provisioned or cleanly unprovisioned; a faulted run that exits 0 has its marker
    and complete credentials durable (no metadata ordering assumed)."""
    if shutil.which("strace") is None:
        pytest.skip("needs strace")
    rec = explore.record(explore.Scenario("plain", "o-sync"), tmp_path / "record")
    targets = syscall_targets(rec, (tmp_path / "record" / "strace.log").read_text())
    assert len(targets) > 20, f"too few durable-state calls found: {targets}"
    cases = [(t, e) for t in targets for e in ERRORS]
    chosen = (random.Random(FAULT_SEED).sample(cases, min(FAULT_SAMPLE, len(cases)))
              if FAULT_SAMPLE else cases)
    how = f"a sample of {len(chosen)} (PEP_CRASH_SEED={FAULT_SEED})" if FAULT_SAMPLE else "all"
    print(f"\n{len(cases)} fault cases; running {how}", file=sys.stderr)

    def one(item: tuple[int, tuple[Target, str]]) -> str:
        n, (target, error) = item
        return inject_once(rec, target, error, server, tmp_path / f"case-{n:04d}")

    with ThreadPoolExecutor(max_workers=2) as pool:
        problems = list(pool.map(one, enumerate(chosen)))
    bad = [p for p in problems if p and p not in (MISSED, OFF_TARGET)]
    missed, off = problems.count(MISSED), problems.count(OFF_TARGET)
    print(f"fault cases: {len(chosen)} run, {len(chosen) - len(bad) - missed} ended well "
          f"({off} of them with the fault on another call than recorded), {len(bad)} did not, "
          f"{missed} never reached the faulted call", file=sys.stderr)
    for p in bad:
        print("  " + p, file=sys.stderr)
    assert not bad, "\n".join(bad[:10])
