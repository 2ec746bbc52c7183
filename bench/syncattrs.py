"""What the synchronous-update attributes cost a provision: FCC's storage writes (the real
FCC's operations: three folders, flashSim, each of 17 items created O_SYNC in BACKUP then
WORKING) in a folder without and with the attributes, the agent's setting and clearing
included, on the file system of the work directory.

Side effects: creates, flags and removes folders and files under the work directory.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from bench.context import Bench
from bench.report import Section, ms
from bench.stats import summarize
from pep_agent.system.fsutil import remove
from pep_agent.system.syncflags import clear_synchronous, make_synchronous

ROUNDS = 15
# The sizes of the 17 item files the real FCC 4.10.0 stored for a gateway's bundle.
ITEM_SIZES = (57, 61, 62, 63, 65, 65, 65, 68, 69, 70, 75, 79, 87, 147, 190, 444, 451)
FLASHSIM = 8192


def _write(path: Path, size: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_SYNC, 0o644)
    try:
        os.write(fd, os.urandom(size))
    finally:
        os.close(fd)


def fcc_storage(folder: Path) -> None:
    """What FCC writes in its working directory `folder`, in its order."""
    pal = folder / "pal"
    pal.mkdir()
    _write(pal / "flashSim", FLASHSIM)
    for sub in ("WORKING", "BACKUP"):
        (pal / sub).mkdir()
    for i, size in enumerate(ITEM_SIZES):
        for sub in ("BACKUP", "WORKING"):
            _write(pal / sub / f"item{i:04d}", size)


def one_round(parent: Path, flagged: bool) -> float:
    """Seconds for one provision's storage: set, FCC's writes, clear (flagged), or the writes."""
    parent.mkdir()
    started = time.perf_counter()
    if flagged:
        make_synchronous(parent)
    staging = parent / "staging"
    staging.mkdir()
    fcc_storage(staging)
    if flagged:
        clear_synchronous(parent)
    elapsed = time.perf_counter() - started
    remove(parent)
    return elapsed


def file_system_of(path: Path) -> str:
    """The type of the mount holding `path` (the longest mount point above it)."""
    best, kind = "", "?"
    try:
        for line in Path("/proc/self/mounts").read_text().splitlines():
            fields = line.split()
            point = fields[1].replace("\\040", " ")
            if (str(path) == point or str(path).startswith(point.rstrip("/") + "/")) \
                    and len(point) > len(best):
                best, kind = point, fields[2]
    except (OSError, IndexError):
        pass
    return kind


def measure(b: Bench) -> Section:
    section = Section("syncattrs", "Synchronous-update attributes: cost per provision")
    work = b.scratch("syncattrs")
    probe = work / "probe"
    probe.mkdir()
    supported = make_synchronous(probe)
    fs = file_system_of(work.resolve())
    section.header = ["FCC's storage writes", "median ms", "IQR ms", "min-max ms", "n"]
    if not supported:
        section.rows.append([f"attributes not supported on {fs}", "-", "-", "-", "0"])
        section.notes.append("the agent goes on without them there, at no cost")
        return section
    rounds = 1 if b.smoke else ROUNDS
    plain: list[float] = []
    flagged: list[float] = []
    for i in range(rounds):
        if i > 2 and b.remaining() < 60:
            section.notes.append(f"stopped after {i} rounds (time budget)")
            break
        plain.append(one_round(work / f"plain-{i}", False))
        flagged.append(one_round(work / f"flagged-{i}", True))
    p, f = summarize(plain), summarize(flagged)
    diffs = summarize([y - x for x, y in zip(plain, flagged)])
    for label, s in (("plain folder", p), ("with the attributes (set and cleared)", f),
                     ("difference, round by round", diffs)):
        section.rows.append([label, ms(s.median), f"{ms(s.p25)}-{ms(s.p75)}",
                             f"{ms(s.min)}-{ms(s.max)}", str(s.n)])
    section.notes.append(f"file system of the work directory: {fs}; 3 folders, flashSim and "
                         f"{len(ITEM_SIZES)} items twice, each file opened O_SYNC as FCC does")
    section.data = {"file_system": fs, "plain_s": plain, "flagged_s": flagged}
    return section
