"""A whole sandbox provision: the agent's own overhead (wall time minus the server request and
the waits for FCC) and peak memory of provision and status.

Side effects: provisions sandbox gateways (agent and FCC processes, identities issued by the
simulated server) and runs `pep-agent status`.
"""

from __future__ import annotations

import json
import time
from typing import Any

from bench import children
from bench.context import PROVISION_TIMEOUT, Bench
from bench.report import Section, Target, ms
from bench.stats import summarize

RUNS = 10
MEMORY_RUNS = 5
TIME_CAP = 90.0
# Runs the console script's entry point and, at exit, records the process's OWN peak RSS and
# CPU time (RUSAGE_SELF): wait4 would report the larger of the agent and the FCC it reaped.
SELF_USAGE = """\
import atexit, resource, sys
_out = sys.argv.pop(1)
def _dump():
    u = resource.getrusage(resource.RUSAGE_SELF)
    with open(_out, "w") as f:
        f.write(f"{u.ru_maxrss} {u.ru_utime} {u.ru_stime}")
atexit.register(_dump)
sys.argv[0] = "pep-agent"
from pep_agent.cli import main
sys.exit(main())
"""
# Steps where the agent waits for something else (status --json step names).
FCC_STEPS = ("start-fcc", "wait-fcc")
NETWORK_STEPS = ("wait-network",)


def status_json(b: Bench, root: Any) -> dict[str, Any]:
    out = b.scratch("status-json")
    done = children.run([b.tools.agent, "status", "--root", str(root), "--json"], out_dir=out,
                        name="status", timeout=30, env=b.tools.env())
    doc: dict[str, Any] = json.loads(done.out())
    return doc


def overhead_of(wall: float, doc: dict[str, Any]) -> dict[str, float]:
    """Split one provision's wall time into the agent's share and the time it waited."""
    steps = {k: float(v.get("duration_s") or 0.0) for k, v in (doc.get("steps") or {}).items()}
    t = doc.get("timings") or {}
    server = float(t.get("server_request_s") or 0.0)
    fcc = sum(steps.get(s, 0.0) for s in FCC_STEPS)
    network = sum(steps.get(s, 0.0) for s in NETWORK_STEPS)
    flow_total = sum(steps.values())
    return {"wall_s": wall, "server_request_s": server, "fcc_wait_s": fcc,
            "network_wait_s": network, "flow_total_s": flow_total,
            "status_agent_s": float(t.get("agent_s") or 0.0),
            "outside_flow_s": wall - flow_total,
            "agent_overhead_s": wall - server - fcc}


def measure(b: Bench) -> list[Section]:
    runs = 1 if b.smoke else RUNS
    stop_at = time.monotonic() + min(TIME_CAP, b.remaining() * 0.25)
    over = Section("overhead", "Agent overhead of a sandbox provision")
    parts: list[dict[str, float]] = []
    for i in range(runs):
        if i > 2 and time.monotonic() > stop_at:
            over.notes.append(f"stopped after {i} runs (time cap)")
            break
        done, root, _ = b.provision("overhead")
        if not done.ok:
            over.errors.append(done.describe())
            continue
        parts.append(overhead_of(done.wall_s, status_json(b, root)))
    keys = ["wall_s", "server_request_s", "fcc_wait_s", "network_wait_s", "outside_flow_s",
            "status_agent_s", "agent_overhead_s"]
    labels = {"wall_s": "provision wall time (outside)",
              "server_request_s": "inside the identity request (server + FCC exchange)",
              "fcc_wait_s": "waiting for FCC (start-fcc + wait-fcc steps)",
              "network_wait_s": "waiting for the network (wait-network step)",
              "outside_flow_s": "outside the steps: interpreter, imports, settings, exit",
              "status_agent_s": "agent share inside the steps (status --json agent_s)",
              "agent_overhead_s": "agent overhead = wall - request - FCC waits"}
    over.header = ["part", "median ms", "IQR ms", "min-max ms", "n"]
    sums = {k: summarize([p[k] for p in parts]) for k in keys}
    for k in keys:
        s = sums[k]
        over.rows.append([labels[k], ms(s.median), f"{ms(s.p25)}-{ms(s.p75)}",
                          f"{ms(s.min)}-{ms(s.max)}", str(s.n)])
    over.notes.append("start-fcc counts as waiting for FCC, though it also holds the agent's "
                      "spawn of FCC and its psutil import; the FCC here is the Python simulator, "
                      "which starts far slower than the real C binary")
    over.notes.append("wait-network stays in the overhead: lo is up, so that step is the "
                      "agent's own work (interface choice, address lookup)")
    over.targets = [Target("agent overhead of a provision", sums["agent_overhead_s"].median * 1000,
                           300, " ms")]
    over.data = {"runs": parts, "summary": {k: v.to_dict() for k, v in sums.items()}}
    return [over, memory(b)]


def memory(b: Bench) -> Section:
    runs = 1 if b.smoke else MEMORY_RUNS
    mem = Section("memory", "Peak memory (max RSS)")
    own_rss: list[float] = []
    own_cpu: list[float] = []
    with_fcc: list[float] = []
    for _ in range(runs):
        root, serial = b.new_gateway("memory")
        out = b.scratch("memory")
        usage_file = out / "self-usage"
        argv = b.provision_argv(root, serial,
                                head=[b.tools.python, "-c", SELF_USAGE, str(usage_file)])
        done = children.run(argv, out_dir=out, name="agent", timeout=PROVISION_TIMEOUT,
                            env=b.tools.env())
        if not done.ok or not usage_file.exists():
            mem.errors.append(f"provision (memory run): {done.describe()}")
            continue
        rss_kb, utime, stime = usage_file.read_text().split()
        own_rss.append(int(rss_kb) / 1024)
        own_cpu.append(float(utime) + float(stime))
        with_fcc.append(done.maxrss_kb / 1024)
    status_rss: list[float] = []
    help_rss: list[float] = []
    for _ in range(runs):
        for argv, into in (([b.tools.agent, "status", "--root", str(b.ref_root)], status_rss),
                           ([b.tools.agent, "--help"], help_rss)):
            done = children.run(argv, out_dir=b.scratch("memory"), name="child", timeout=30,
                                env=b.tools.env())
            into.append(done.maxrss_kb / 1024)
    rows = [("provision: the agent process alone (RUSAGE_SELF at exit)", own_rss),
            ("provision: wait4 of the agent (max of agent and the FCC it reaped)", with_fcc),
            ("status", status_rss), ("--help", help_rss)]
    mem.header = ["process", "median MB", "min-max MB", "n"]
    for label, values in rows:
        s = summarize(values)
        mem.rows.append([label, f"{s.median:.1f}", f"{s.min:.1f}-{s.max:.1f}", str(s.n)])
    cpu = summarize(own_cpu)
    mem.notes.append(f"provision's own CPU time (user+sys, FCC excluded): "
                     f"{cpu.text(1000, ' ms')}")
    mem.notes.append("MB = 1024 KB of ru_maxrss")
    mem.targets = [Target("peak RSS of provision (agent alone)", summarize(own_rss).median, 40,
                          " MB")]
    mem.data = {"provision_self_mb": own_rss, "provision_wait4_mb": with_fcc,
                "provision_self_cpu_s": own_cpu, "status_mb": status_rss, "help_mb": help_rss}
    return mem
