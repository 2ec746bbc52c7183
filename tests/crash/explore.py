"""Records a sandbox provision under strace, builds the crash states of it, reruns the agent on
each and judges the outcome.

Side effects: creates sandbox roots and server databases under the work directory it is
given, and starts (and stops, by pid) simulated pep servers and agents on loopback.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from pep_agent.gateway import esfs, install
from pep_agent.settings.paths import Paths
from pep_agent.settings.profiles import get_profile
from pep_agent.sim import esfs_codec
from pep_agent.system.syncflags import make_synchronous
from tests.agentprocs import AGENT, agent_env
from tests.crash import fsmodel, trace
from tests.endstate import (
    IDENTITY,
    MCC,
    OLD_SERIAL,
    STATE_DIR,
    assert_no_wasted_identity,
    edge_core_ops,
    seed_old_identity,
)
from tests.simprocs import fcc_command, start_server

SCENARIOS = ("plain", "over-previous", "parsec")
FCC_MODES = ("o-sync", "no-sync")
OUTCOMES = ("provisioned", "clean unprovisioned", "wasted", "stranded", "bad marker")
# Outcomes a state may end in. A state where the server had deployed the record but the power
# cut itself left no usable credentials on the gateway is wasted like any other ("lost at the
# cut" in its detail): the server holds the record and the gateway cannot use it.
ACCEPTED = ("provisioned", "clean unprovisioned")
MARKER = f"{STATE_DIR}/provisioned"
RUN_TIMEOUT = 180.0
# A rerun that leaves a recovery pending is followed by more, as the unit's restarts would.
MAX_RERUNS = 3
STRACE_BYTES = 1 << 20


# strace -f slows every process it follows several fold: on a loaded machine sim fcc under it
# took longer than the agent's usual 10 s (tests/agentprocs.py) to print its port. The agent
# stops waiting as soon as FCC prints it, so the longer bound costs a normal run nothing.
TRACED = {"PEP_FCC_START_TIMEOUT": "60"}


def strace_argv(log: Path, *extra: str) -> list[str]:
    return ["strace", "-f", "-y", "-xx", "-qq", "-s", str(STRACE_BYTES), "-o", str(log),
            "-e", "trace=" + ",".join(trace.TRACED), *extra]


@dataclass
class Scenario:
    name: str
    fcc_mode: str

    @property
    def serial(self) -> str:
        return f"GW-CRASH-{self.name}-{self.fcc_mode}".upper()

    @property
    def parsec(self) -> bool:
        return self.name == "parsec"

    def fcc(self, root: Path) -> str:
        # sim fcc: the model replays the file calls it makes (O_SYNC writes in place).
        command = (fcc_command(parsec=True, mcc_config=root / MCC) if self.parsec
                   else fcc_command(sim=True))
        return command + (" --no-sync" if self.fcc_mode == "no-sync" else "")

    def argv(self, root: Path, url: str) -> list[str]:
        return [*AGENT, "provision", "--root", str(root), "--server", url, "--serial",
                self.serial, "--interface", "lo", "--fcc-command", self.fcc(root), "--no-reboot",
                "--parsec" if self.parsec else "--no-parsec"]

    def seed(self, root: Path) -> None:
        root.mkdir(parents=True)
        if self.name == "over-previous":
            seed_old_identity(root)


@dataclass
class Recording:
    scenario: Scenario
    root: Path
    initial: dict[int, fsmodel.Inode]
    ops: list[fsmodel.Op]
    record_from: int
    db_after: Path
    exit_code: int


def record(scenario: Scenario, work: Path) -> Recording:
    """One provision of the scenario under strace; the server's records copied afterwards."""
    root = (work / "recorded").resolve()
    scenario.seed(root)
    initial = fsmodel.snapshot(root)
    server = start_server(work / "server")
    log = work / "strace.log"
    try:
        out = subprocess.run([*strace_argv(log), *scenario.argv(root, server.url)],
                             capture_output=True, text=True, timeout=RUN_TIMEOUT,
                             env=agent_env(**TRACED), stdin=subprocess.DEVNULL, check=False)
    finally:
        server.stop()
    if out.returncode != 0:
        raise AssertionError(f"the recorded provision failed ({out.returncode}):\n{out.stderr}")
    db_after = work / "db-after.sqlite"
    shutil.copyfile(server.db, db_after)
    umask = os.umask(0)
    os.umask(umask)
    recorder = fsmodel.Recorder(root, initial, umask)
    for call in trace.parse(log.read_text()):
        recorder.feed(call)
    fcc_ops = [i for i, op in enumerate(recorder.ops) if op.fcc]
    assert fcc_ops, "the trace holds no write of FCC's: was it traced?"
    # Inodes born during the run start out unreachable: only the replayed links show them.
    return Recording(scenario, root, {**initial, **recorder.born}, recorder.ops,
                     fcc_ops[-1] + 1, db_after, out.returncode)


def sync_attributes_supported(work: Path) -> bool:
    """Whether the file system of `work` has the synchronous-update attributes (ext4 does, as
    on gateways; tmpfs does not): without them a recording cannot show what the agent does."""
    probe = work / "sync-probe"
    probe.mkdir(parents=True)
    try:
        return make_synchronous(probe)
    finally:
        probe.rmdir()


def reboot_empties(path: str) -> bool:
    return path == "run" or path.startswith("run/")


def distinct_states(rec: Recording) -> dict[str, fsmodel.CrashState]:
    """The distinct crash states of a recording (the first seen stands for its equals)."""
    found: dict[str, fsmodel.CrashState] = {}
    for key, state in fsmodel.crash_states(rec.initial, rec.ops, rec.record_from,
                                           reboot_empties):
        found.setdefault(key, state)
    return found


@dataclass
class Verdict:
    outcome: str
    detail: str
    state: fsmodel.CrashState
    codes: list[int] = field(default_factory=list)

    def describe(self, rec: Recording) -> str:
        s = self.state
        where = rec.ops[s.point - 1].text if s.point else "before the first operation"
        lost = f", lost: {rec.ops[s.lost].text}" if s.lost is not None else ""
        return (f"{self.outcome}: {s.model} after op {s.point} ({where}{lost}), "
                f"record {'held' if s.record else 'absent'}, exits {self.codes}: {self.detail}")


def credentials_problems(root: Path, parsec: bool) -> list[str]:
    """What is wrong with the installed identity (empty: complete and non-empty)."""
    problems = []
    ident = root / IDENTITY
    try:
        data = json.loads(ident.read_text())
        if not data.get("enrollmentID"):
            problems.append("identity.json: no enrollment id")
    except (OSError, ValueError) as e:
        problems.append(f"identity.json: {type(e).__name__}")
    mcc = root / MCC
    problems += esfs.check_parsec(mcc) if parsec else esfs.check_pal(mcc)
    return problems


def has_credentials(root: Path, serial: str, parsec: bool) -> bool:
    """Whether complete credentials of serial are on the gateway: installed or staged."""
    places = [root / MCC]
    if not parsec:
        places.append(install.staged_pal(Paths(root), get_profile("lmp")))
    for place in places:
        try:
            problems = esfs.check_parsec(place) if parsec else esfs.check_pal(place)
            if problems:
                continue
            typed = "CfgParam_mbed.EndpointName"
            endpoint = ((place / "pst" / "mbed.EndpointName").read_bytes() if parsec
                        else esfs_codec.read_item(place / "WORKING", typed))
        except (OSError, ValueError):
            continue
        if endpoint.decode(errors="replace").strip() == serial:
            return True
    return False


def rerun(rec: Recording, state: fsmodel.CrashState, work: Path) -> Verdict:
    """Reboot into the state: the agent runs again, the server holding what it held then."""
    scenario = rec.scenario
    root = (work / "gw").resolve()
    fsmodel.materialize(state.tree, root)
    # Before any rerun: whether the cut left complete credentials for the record.
    lost = state.record and not has_credentials(root, scenario.serial, scenario.parsec)
    server_dir = work / "server"
    server_dir.mkdir()
    if state.record:
        shutil.copyfile(rec.db_after, server_dir / "pep-sim.sqlite")
    server = start_server(server_dir)
    codes: list[int] = []
    try:
        for _ in range(MAX_RERUNS):
            out = subprocess.run(scenario.argv(root, server.url), capture_output=True,
                                 text=True, timeout=RUN_TIMEOUT, env=agent_env(),
                                 stdin=subprocess.DEVNULL, check=False)
            codes.append(out.returncode)
            (work / f"rerun-{len(codes)}.err").write_text(out.stderr)
            verdict = judge(rec, state, root, server, codes, lost)
            if verdict.outcome != "recovery-pending":
                return verdict
        return Verdict("stranded", f"still waiting to recover after {MAX_RERUNS} runs", state,
                       codes)
    finally:
        server.stop()


def judge(rec: Recording, state: fsmodel.CrashState, root: Path, server: object,
          codes: list[int], lost: bool) -> Verdict:
    scenario = rec.scenario
    previous = OLD_SERIAL if scenario.name == "over-previous" else None
    try:
        verdicts = assert_no_wasted_identity(server, {scenario.serial: root},  # type: ignore[arg-type]
                                             previous=previous)
    except AssertionError as e:
        kind = "wasted" if "WASTED" in str(e) else "stranded"
        cut = "lost at the cut: " if lost and kind == "wasted" else ""
        return Verdict(kind, cut + (str(e).splitlines() or [repr(e)])[0], state, codes)
    except (OSError, ValueError) as e:
        return Verdict("stranded", f"unreadable credentials: {type(e).__name__}: {e}", state,
                       codes)
    if (root / MARKER).exists():
        problems = credentials_problems(root, scenario.parsec)
        if problems:
            return Verdict("bad marker", "; ".join(problems[:3]), state, codes)
    verdict = verdicts[scenario.serial]
    if verdict == "recovery-pending":
        return Verdict("recovery-pending", "", state, codes)
    if verdict in ("unprovisioned", "previous"):
        return Verdict("clean unprovisioned", verdict, state, codes)
    ops = edge_core_ops(root)
    if codes[-1] == 0 and (root / MARKER).exists() and ops and ops[-1] == "release":
        return Verdict("provisioned", "", state, codes)
    return Verdict("stranded", f"credentials installed, but exit {codes[-1]}, marker "
                   f"{'present' if (root / MARKER).exists() else 'missing'}, edge-core {ops[-1:]}",
                   state, codes)


def explore(rec: Recording, states: Iterable[fsmodel.CrashState], work: Path,
            workers: int = 2) -> list[Verdict]:
    """Rerun every state (in parallel) and return the verdicts in the order given."""
    todo = list(states)

    def one(item: tuple[int, fsmodel.CrashState]) -> Verdict:
        n, state = item
        return rerun(rec, state, work / f"state-{n:04d}")

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(one, enumerate(todo)))


def sample(states: list[fsmodel.CrashState], count: int, seed: int) -> list[fsmodel.CrashState]:
    """`count` states drawn with `seed`, spread over the models (one each first, in turn)."""
    rng = random.Random(seed)
    pools = [[s for s in states if s.model == m] for m in fsmodel.MODELS]
    for pool in pools:
        rng.shuffle(pool)
    chosen: list[fsmodel.CrashState] = []
    while len(chosen) < min(count, len(states)):
        for pool in pools:
            if pool and len(chosen) < count:
                chosen.append(pool.pop())
    return chosen


def summary(title: str, verdicts: list[Verdict]) -> str:
    counts = Counter(v.outcome for v in verdicts)
    return f"{title}: {len(verdicts)} states: " + ", ".join(
        f"{counts.get(o, 0)} {o}" for o in OUTCOMES)


def print_report(rec: Recording, verdicts: list[Verdict]) -> None:
    s = rec.scenario
    print(summary(f"crash states of {s.name} with FCC {s.fcc_mode}", verdicts), file=sys.stderr)
    for v in verdicts:
        if v.outcome not in ACCEPTED:
            print("  " + v.describe(rec), file=sys.stderr)
