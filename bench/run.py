#!/usr/bin/env python3
"""`make bench`: how fast and how light pep-agent is, next to its floors.

Runs every measurement against a simulated pep server on 127.0.0.1 and sandbox gateways in a
temporary directory, prints each figure (median and spread over repeated runs) as it finishes,
and writes results.md, results.json and line-throughput.png to bench/results/.

Side effects: starts and stops (by pid) the simulator and agent processes it measures, also when
it fails or is sent SIGTERM (and the simulated server ends with it even on SIGKILL), creates
and removes a temporary work directory, writes the results directory. Exit status: 0 when every
measurement ran (targets missed are reported, not fatal), 1 when one failed or a gateway of a
line run did not provision, 2 on a usage error.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

if __package__ in (None, ""):
    # Run as a script: import the bench package from the project, not from bench/ itself.
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from bench import children, coldstart, imports, line, provision, simthroughput, syncattrs
from bench.context import Bench
from bench.report import Section, show, write
from bench.simserver import SimServer, Tools

RESULTS = Path(__file__).resolve().parent / "results"
BUDGET = 540.0  # seconds; `make bench` must end within 10 minutes
PLOT = "line-throughput.png"

Measure = Callable[[Bench, argparse.Namespace], list[Section]]
MEASUREMENTS: dict[str, tuple[str, Measure]] = {
    "cold": ("cold start of --help, status, get-enrollment-id vs python/import/curl floors",
             lambda b, a: [coldstart.measure(b)]),
    "imports": ("import cost (-X importtime) of status, --help and provision",
                lambda b, a: [imports.measure(b)]),
    "provision": ("agent overhead of a sandbox provision; peak RSS of provision and status",
                  lambda b, a: provision.measure(b)),
    "line": ("15 then 100 gateways provisioning in parallel against one server (+ PNG)",
             lambda b, a: [line.measure(b, None if a.no_plot else a.out / PLOT)]),
    "sim": ("identities per second the simulated server issues, FCC exchange included",
            lambda b, a: [simthroughput.measure(b)]),
    "syncattrs": ("FCC's storage writes without and with the synchronous-update attributes",
                  lambda b, a: [syncattrs.measure(b)]),
}


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench/run.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--smoke", action="store_true",
                   help="one tiny iteration of each measurement (for the unit test)")
    p.add_argument("--list", action="store_true", help="list the measurements and exit")
    p.add_argument("--only", default="", help="comma-separated measurements to run")
    p.add_argument("--out", type=Path, default=RESULTS, help="results directory")
    p.add_argument("--budget", type=float, default=BUDGET,
                   help="seconds the whole run may take (loops stop early to stay within it)")
    p.add_argument("--no-plot", action="store_true", help="skip the PNG (no matplotlib)")
    p.add_argument("--keep", action="store_true", help="keep the temporary work directory")
    args = p.parse_args(argv)
    names = [n for n in args.only.split(",") if n] or list(MEASUREMENTS)
    unknown = [n for n in names if n not in MEASUREMENTS]
    if unknown:
        p.error(f"unknown measurement(s) {', '.join(unknown)}; see --list")
    args.names = names
    return args


def meta(tools: Tools, smoke: bool) -> dict[str, str]:
    try:
        cpu = next((ln.split(":", 1)[1].strip() for ln in
                    Path("/proc/cpuinfo").read_text().splitlines()
                    if ln.startswith("model name")), platform.processor())
    except OSError:
        cpu = platform.processor()
    return {"date": datetime.datetime.now().isoformat(timespec="seconds"),
            "machine": f"{cpu}, {os.cpu_count()} CPUs, {platform.machine()}",
            "kernel": platform.release(), "python": platform.python_version(),
            "venv": str(tools.bin_dir.parent.name), "mode": "smoke" if smoke else "full",
            "load average at start": " ".join(f"{x:.2f}" for x in os.getloadavg())}


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    # SIGTERM/SIGHUP would end the process without running the `finally` below, leaving the
    # simulated server running: they raise SystemExit instead.
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, children.exit_on_signal)
    if args.list:
        for name, (what, _) in MEASUREMENTS.items():
            print(f"{name:10} {what}")
        return 0
    tools = Tools.current()
    if not Path(tools.agent).exists():
        print(f"bench: no pep-agent console script next to {sys.executable}; run make setup",
              file=sys.stderr)
        return 2
    started = time.monotonic()
    info = meta(tools, args.smoke)
    work = Path(tempfile.mkdtemp(prefix="pep-bench-"))
    sections: list[Section] = []
    failed = False
    server = None
    try:
        server = SimServer(tools, work / "server")
        print(f"bench: simulated pep server at {server.url}; work directory {work}", flush=True)
        b = Bench(tools, work, server, args.smoke, started + args.budget)
        b.make_reference()
        for name in args.names:
            t0 = time.monotonic()
            try:
                new = MEASUREMENTS[name][1](b, args)
            except Exception as e:  # one broken measurement must not hide the others
                new = [Section(name, f"{name} (failed)", errors=[f"{type(e).__name__}: {e}"])]
            for section in new:
                section.notes.append(f"measured in {time.monotonic() - t0:.0f} s")
                show(section)
            sections.extend(new)
    finally:
        for signum in (signal.SIGTERM, signal.SIGHUP):  # a second signal must not cut this short
            signal.signal(signum, signal.SIG_IGN)
        # What an interrupted measurement left (a provision waiting for the server), then the
        # server; both by pid.
        children.kill_all()
        if server is not None:
            server.stop()
        if args.keep:
            print(f"bench: kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    failed = any(s.errors for s in sections)
    info["load average at end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    info["duration"] = f"{time.monotonic() - started:.0f} s"
    written = write(args.out, info, sections)
    print("\n## Targets")
    for s in sections:
        for t in s.targets:
            print(f"- {t.text()}")
    print(f"\nbench: wrote {', '.join(str(p) for p in written)} in {info['duration']}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
