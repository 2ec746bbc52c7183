"""Cold start: whole `pep-agent` processes next to their floors (the bare interpreter, the
imports each command cannot avoid) and next to bash+curl doing what the reference pep-cli does.

Side effects: runs short-lived processes; get-enrollment-id and curl query the simulated server.
"""

from __future__ import annotations

import http.client
import random
import time
import urllib.parse
from pathlib import Path

from bench import children
from bench.context import Bench
from bench.report import Section, Target, ms
from bench.stats import ratio, summarize

ROUNDS = 30
TIME_CAP = 120.0  # seconds this section may take at most
RUN_TIMEOUT = 30.0
CURL_SCRIPT = Path(__file__).with_name("reference-get-enrollment-id.sh")
REQUEST = "one GET /v3/enrollment-id on a new connection (in-process)"


def commands(b: Bench) -> dict[str, list[str]]:
    py, agent, url = b.tools.python, b.tools.agent, b.server.url
    return {
        "python -c pass": [py, "-c", "pass"],
        "python -c 'import typer'": [py, "-c", "import typer"],
        "python -c 'import typer, requests'": [py, "-c", "import typer, requests"],
        "bash+curl get-enrollment-id": ["bash", str(CURL_SCRIPT), b.ref_serial],
        "pep-agent --help": [agent, "--help"],
        "pep-agent status": [agent, "status", "--root", str(b.ref_root)],
        "python -m pep_agent status": [py, "-m", "pep_agent", "status", "--root",
                                       str(b.ref_root)],
        "pep-agent get-enrollment-id": [agent, "get-enrollment-id", "-s", b.ref_serial,
                                        "--server", url],
    }


def request_once(url: str, serial: str) -> float:
    parts = urllib.parse.urlsplit(url)
    started = time.perf_counter()
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=30)
    try:
        conn.request("GET", "/v3/enrollment-id?" + urllib.parse.urlencode(
            {"serialNumber": serial}))
        conn.getresponse().read()
    finally:
        conn.close()
    return time.perf_counter() - started


def _check(name: str, done: children.Finished, b: Bench) -> str | None:
    if not done.ok:
        return f"{name}: {done.describe()}"
    if "get-enrollment-id" in name and done.out().strip() != b.ref_enrollment:
        return f"{name}: printed something else than the enrollment id"
    return None


def measure(b: Bench) -> Section:
    cmds = commands(b)
    rounds = 1 if b.smoke else ROUNDS
    env = b.tools.env(PEP_SERVER_URL=b.server.url)
    out = b.scratch("coldstart")
    walls: dict[str, list[float]] = {name: [] for name in [*cmds, REQUEST]}
    cpus: dict[str, list[float]] = {name: [] for name in cmds}
    section = Section("cold_start", "Cold start (whole processes, wall time)")
    stop_at = time.monotonic() + min(TIME_CAP, b.remaining() * 0.3)
    order = list(cmds)
    # Shuffled each round so that no command always runs first (not a security use).
    shuffle = random.Random(6)  # noqa: S311
    # Round 0 warms the page cache and writes any missing .pyc; it is not counted.
    for rnd in range(rounds + (0 if b.smoke else 1)):
        if rnd > 1 and time.monotonic() > stop_at:
            section.notes.append(f"stopped after {rnd - 1} rounds (time cap)")
            break
        shuffle.shuffle(order)
        for name in order:
            done = children.run(cmds[name], out_dir=out, name="child", timeout=RUN_TIMEOUT,
                                env=env)
            problem = _check(name, done, b)
            if problem and problem not in section.errors:
                section.errors.append(problem)
            if rnd > 0 or b.smoke:
                walls[name].append(done.wall_s)
                cpus[name].append(done.user_s + done.sys_s)
        if rnd > 0 or b.smoke:
            walls[REQUEST].append(request_once(b.server.url, b.ref_serial))
    s = {name: summarize(v) for name, v in walls.items()}
    c = {name: summarize(v) for name, v in cpus.items()}
    med = {name: v.median for name, v in s.items()}
    cpu = {name: v.median for name, v in c.items()}
    floor_pass = med["python -c pass"]
    floor_typer = med["python -c 'import typer'"]
    floor_req = med["python -c 'import typer, requests'"] + med[REQUEST]
    curl = med["bash+curl get-enrollment-id"]
    floors = {"pep-agent --help": floor_typer, "pep-agent status": floor_typer,
              "python -m pep_agent status": floor_typer,
              "pep-agent get-enrollment-id": floor_req}
    cpu_floors = {"pep-agent --help": cpu["python -c 'import typer'"],
                  "pep-agent status": cpu["python -c 'import typer'"],
                  "python -m pep_agent status": cpu["python -c 'import typer'"],
                  "pep-agent get-enrollment-id": cpu["python -c 'import typer, requests'"]}
    section.header = ["command", "wall median ms", "IQR ms", "min-max ms", "n",
                      "x import floor", "x python floor", "x curl", "CPU median ms",
                      "CPU x import floor"]
    for name, summary in s.items():
        floor = floors.get(name)
        cs = c.get(name)
        section.rows.append([
            f"`{name}`", ms(summary.median), f"{ms(summary.p25)}-{ms(summary.p75)}",
            f"{ms(summary.min)}-{ms(summary.max)}", str(summary.n),
            f"{ratio(summary.median, floor):.2f}" if floor else "",
            f"{ratio(summary.median, floor_pass):.2f}" if floor else "",
            f"{ratio(summary.median, curl):.2f}" if "get-enrollment" in name else "",
            ms(cs.median) if cs else "",
            f"{ratio(cpu[name], cpu_floors[name]):.2f}" if name in cpu_floors else ""])
    section.notes.append("import floor of --help and status: `python -c 'import typer'`; of "
                         "get-enrollment-id: `python -c 'import typer, requests'` plus "
                         f"{REQUEST}")
    section.notes.append("the floor commands and the agent run with the same venv interpreter, "
                         "so both pay the same site/.pth start-up; CPU = user+sys of the process "
                         "(less disturbed than wall time by other load on the machine)")
    section.targets = [
        Target("--help / import typer", ratio(med["pep-agent --help"], floor_typer), 1.25, "x"),
        Target("status / import typer", ratio(med["pep-agent status"], floor_typer), 1.25, "x"),
        Target("get-enrollment-id / (import typer, requests + request)",
               ratio(med["pep-agent get-enrollment-id"], floor_req), 1.2, "x"),
    ]
    section.data = {"rounds": len(walls[REQUEST]),
                    "seconds": {k: v.to_dict() for k, v in s.items()},
                    "cpu_seconds": {k: v.to_dict() for k, v in c.items()}, "argv": cmds}
    return section
