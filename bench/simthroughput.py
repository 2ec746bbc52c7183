"""Simulator throughput: identities per second the simulated pep server issues, FCC exchange
included, with the FCC simulators started beforehand so that their start-up is not counted.

Side effects: starts FCC simulators on lo, sends identity requests to the simulated server
(which injects those FCCs), and stops any FCC that did not exit by pid.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

from bench import children
from bench.context import Bench
from bench.report import Section
from bench.simserver import start_fcc
from bench.stats import summarize

# (identities, concurrent clients): one at a time, then a whole line at once.
PLAN = ((20, 1), (50, 50))
SMOKE_PLAN = ((2, 1), (2, 2))
REPEATS = 3
FCC_EXIT_TIMEOUT = 30.0
RESERVE = 30.0  # a repeat starts only with this much of the run's budget left


@dataclass
class Batch:
    count: int
    clients: int
    elapsed_s: float = 0.0
    latency_s: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def per_s(self) -> float:
        return self.count / self.elapsed_s if self.elapsed_s > 0 else 0.0


def run_batch(b: Bench, count: int, clients: int) -> Batch:
    out = b.scratch(f"simthroughput-{count}x{clients}")
    fccs = [start_fcc(b.tools, out / f"fcc-{i:03d}", f"fcc-{i:03d}") for i in range(count)]
    serials = [b.new_gateway("sim")[1] for _ in range(count)]
    batch = Batch(count, clients)

    def one(i: int) -> None:
        _, ip, port = fccs[i]
        started = time.perf_counter()
        try:
            doc = b.server.identity(serials[i], ip, port)
            if not doc.get("enrollmentID"):
                batch.errors.append(f"{serials[i]}: no enrollmentID in the answer")
        except OSError as e:
            batch.errors.append(f"{serials[i]}: {e}")
        batch.latency_s.append(time.perf_counter() - started)

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        list(pool.map(one, range(count)))
    batch.elapsed_s = time.perf_counter() - started
    ended = children.wait_all([c for c, _, _ in fccs],
                              time.monotonic() + FCC_EXIT_TIMEOUT)
    batch.errors.extend(f"FCC {r.describe()}" for r in ended if not r.ok)
    return batch


def measure(b: Bench) -> Section:
    section = Section("sim", "Simulator throughput (identities issued, FCC exchange included)")
    batches: list[Batch] = []
    for count, clients in SMOKE_PLAN if b.smoke else PLAN:
        for repeat in range(1 if b.smoke else REPEATS):
            if repeat > 0 and b.remaining() < RESERVE:
                section.notes.append(f"{count}x{clients}: {repeat} run(s) only (time budget)")
                break
            batches.append(run_batch(b, count, clients))
    section.header = ["identities", "concurrent clients", "identities/s", "latency p50 ms",
                      "latency p95 ms", "errors"]
    for r in batches:
        lat = summarize(r.latency_s)
        section.rows.append([str(r.count), str(r.clients), f"{r.per_s:.1f}",
                             f"{lat.median * 1000:.1f}", f"{lat.p95 * 1000:.1f}",
                             str(len(r.errors))])
        section.errors.extend(r.errors[:5])
    for count, clients in sorted({(r.count, r.clients) for r in batches}):
        rate = summarize([r.per_s for r in batches if (r.count, r.clients) == (count, clients)])
        section.notes.append(f"{count} identities, {clients} client(s) at a time: identities/s "
                             f"{rate.text(1, '', 1)}")
    section.notes.append("the FCC simulators are started and listening before the clock starts; "
                         "each request makes the server generate a device key and certificate, "
                         "run the wire exchange with that FCC (which stores the items and "
                         "exits), and write its record")
    section.data = {"batches": [{**asdict(r), "per_s": r.per_s} for r in batches]}
    return section
