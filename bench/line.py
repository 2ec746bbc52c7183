"""A production line: many sandbox gateways provisioning at once against one simulated server.

Side effects: starts N `pep-agent provision` processes at once (each with its own root, serial
and FCC simulator on lo), reads their journals and the server's records, and draws a PNG.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench import children
from bench.context import Bench
from bench.report import Section, Target
from bench.stats import percentile, summarize

SIZES = (15, 100)
REPEATS = {15: 5, 100: 3}
LINE_TIMEOUT = 300.0
# A repeat starts only when this much of the run's budget would be left afterwards.
RESERVE = 60.0


def journal(root: Path) -> dict[str, Any]:
    """What `pep-agent status --json` reports, read in-process (100 processes would skew the
    next measurement more than they tell)."""
    from pep_agent.report import status_document
    from pep_agent.settings.paths import Paths

    return status_document(Paths(root))


def run_line(b: Bench, size: int, repeat: int) -> dict[str, Any]:
    tag = f"line{size}r{repeat}"
    gateways = [b.new_gateway(tag) for _ in range(size)]
    out = b.scratch(tag)
    env = b.tools.env()
    deadline = time.monotonic() + min(LINE_TIMEOUT, max(b.remaining() - 10.0, 30.0))
    server_cpu = b.server.cpu_seconds()
    kids = [children.Child(b.provision_argv(root, serial), out_dir=out, name=f"gw-{i:03d}",
                           env=env) for i, (root, serial) in enumerate(gateways)]
    results = children.wait_all(kids, deadline)
    server_cpu = b.server.cpu_seconds() - server_cpu
    first = min(r.started for r in results)
    walls = [r.wall_s for r in results]
    makespan = max(r.ended for r in results) - first
    failed = [f"{serial}: {r.describe()}" for r, (_, serial) in zip(results, gateways)
              if not r.ok]
    docs = [journal(root) for root, _ in gateways]
    not_done = [serial for d, (_, serial) in zip(docs, gateways)
                if d.get("state") != "provisioned" or not d.get("provisioned")]
    ours = {serial for _, serial in gateways}
    records = [r for r in b.server.records() if r.get("serialNumber") in ours]
    serial_counts = Counter(r.get("serialNumber") for r in records)
    id_counts = Counter(r.get("enrollmentID") for r in records)
    duplicated = sorted(str(s) for s, n in serial_counts.items() if n > 1) + sorted(
        str(e) for e, n in id_counts.items() if n > 1)
    mismatched = [serial for d, (_, serial) in zip(docs, gateways)
                  if d.get("enrollment_id") not in id_counts]
    server_s = [float((d.get("timings") or {}).get("server_request_s") or 0) for d in docs]
    return {
        "size": size, "repeat": repeat, "makespan_s": makespan,
        "gateways_per_min": size / makespan * 60 if makespan > 0 else 0.0,
        "walls_s": walls, "start_offsets_s": [r.started - first for r in results],
        "server_request_s": server_s, "failed": failed, "not_provisioned": not_done,
        "records": len(records), "duplicated": duplicated, "journal_id_mismatch": mismatched,
        "max_rss_mb": max(r.maxrss_kb for r in results) / 1024,
        # wait4 of an agent includes the FCC simulator it reaped.
        "cpu_s": [r.user_s + r.sys_s for r in results], "server_cpu_s": server_cpu,
    }


def measure(b: Bench, plot_to: Path | None) -> Section:
    section = Section("line", "Line throughput: gateways provisioning in parallel, one server")
    sizes = (2,) if b.smoke else SIZES
    runs: list[dict[str, Any]] = []
    for size in sizes:
        for repeat in range(1 if b.smoke else REPEATS[size]):
            if repeat > 0 and b.remaining() < RESERVE + 60:
                section.notes.append(f"{size} gateways: {repeat} run(s) only (time budget)")
                break
            runs.append(run_line(b, size, repeat))
    section.header = ["gateways", "run", "all ok", "gateways/min", "p50 s", "p95 s", "max s",
                      "server request p50/p95 s", "records on server",
                      "CPU/gateway ms (agent+FCC)", "server CPU/identity ms"]
    for r in runs:
        ok = not (r["failed"] or r["not_provisioned"] or r["duplicated"]
                  or r["journal_id_mismatch"]) and r["records"] == r["size"]
        section.rows.append([
            str(r["size"]), str(r["repeat"] + 1), "yes" if ok else "NO",
            f"{r['gateways_per_min']:.0f}", f"{percentile(r['walls_s'], 50):.2f}",
            f"{percentile(r['walls_s'], 95):.2f}", f"{max(r['walls_s']):.2f}",
            f"{percentile(r['server_request_s'], 50):.3f}/"
            f"{percentile(r['server_request_s'], 95):.3f}", str(r["records"]),
            f"{percentile(r['cpu_s'], 50) * 1000:.0f}",
            f"{r['server_cpu_s'] / r['size'] * 1000:.0f}"])
        section.errors.extend(r["failed"][:5])
        for key in ("not_provisioned", "duplicated", "journal_id_mismatch"):
            if r[key]:
                section.errors.append(f"{r['size']} gateways, run {r['repeat'] + 1}: {key}: "
                                      f"{', '.join(r[key][:5])}")
    for size in sizes:
        mine = [r for r in runs if r["size"] == size]
        if not mine:
            continue
        rate = summarize([r["gateways_per_min"] for r in mine])
        per_gw = summarize([w for r in mine for w in r["walls_s"]])
        section.notes.append(f"{size} gateways: gateways/min {rate.text(1, '', 0)}; time per "
                             f"gateway (all runs) {per_gw.text(1, ' s', 2)}, p95 "
                             f"{per_gw.p95:.2f} s")
        bad = sum(len(r["failed"]) + len(r["not_provisioned"]) + abs(r["records"] - r["size"])
                  for r in mine)
        dup = sum(len(r["duplicated"]) for r in mine)
        section.targets.append(Target(f"{size} parallel gateways: failed", float(bad), 0))
        section.targets.append(Target(f"{size} parallel gateways: duplicated", float(dup), 0))
    section.notes.append("time per gateway: from the spawn of its `pep-agent provision` to its "
                         "exit, all spawned at once; each gateway also runs its own FCC "
                         "simulator, so a line of N is 2N Python processes sharing this "
                         "machine's CPUs (on a real line each gateway has its own CPU)")
    if runs:
        cpu_per = percentile([c for r in runs for c in r["cpu_s"]], 50) + sum(
            r["server_cpu_s"] for r in runs) / sum(r["size"] for r in runs)
        cores = os.cpu_count() or 1
        section.notes.append(f"CPU bound of this machine: {cpu_per * 1000:.0f} ms of CPU per "
                             f"gateway (agent + FCC simulator + server) on {cores} CPUs = "
                             f"{cores * 60 / cpu_per:.0f} gateways/min at most")
    section.data = {"runs": runs}
    if plot_to is not None and runs:
        plot(runs, plot_to)
        section.notes.append(f"plot: {plot_to.name}")
    return section


def plot(runs: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 5))
    for r in runs:
        order = range(1, len(r["walls_s"]) + 1)
        ax.plot(order, r["walls_s"], marker="o", markersize=3, linewidth=0.8,
                label=f"{r['size']} gateways, run {r['repeat'] + 1} "
                      f"({r['gateways_per_min']:.0f}/min)")
    ax.set_xlabel("start order")
    ax.set_ylabel("time per gateway (s): spawn to exit of provision")
    ax.set_title("pep-agent provision, gateways started at once against one simulated server")
    ax.grid(True, alpha=0.3)
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
