"""Import cost: `python -X importtime` of the agent's commands, the heaviest imports, and every
module outside the standard library that a command loads (with who imported it).

Side effects: runs `python -X importtime -m pep_agent ...` processes (status, --help, and a
sandbox provision against the simulated server).
"""

from __future__ import annotations

import functools
import os
import pkgutil
import sys
from collections import defaultdict
from dataclasses import dataclass

from bench import children
from bench.context import Bench
from bench.report import Section, Target, ms
from bench.stats import summarize

RUNS = 5
RUN_TIMEOUT = 60.0
TOP = 10
NEVER_ON_PROVISION = ("pep_agent.sim", "rich")
NOISE_US = 500  # optional imports that fail (requests probing for brotli, socks...) cost ~0


@dataclass(frozen=True)
class ImportLine:
    name: str
    self_us: int
    cumulative_us: int
    depth: int
    parent: str | None  # the module whose import ran this one; None: a top-level import


def parse(text: str) -> list[ImportLine]:
    """The lines of -X importtime output, each with the module that imported it."""
    raw: list[tuple[str, int, int, int]] = []
    for line in text.splitlines():
        if not line.startswith("import time:"):
            continue
        fields = line[len("import time:"):].split("|")
        if len(fields) != 3 or not fields[0].strip().isdigit():
            continue  # the header line
        label = fields[2]
        name = label.strip()
        depth = (len(label) - len(label.lstrip(" ")) - 1) // 2
        raw.append((name, int(fields[0]), int(fields[1]), depth))
    result: list[ImportLine] = []
    seen: set[str] = set()
    for i, (name, self_us, cum, depth) in enumerate(raw):
        # A module's line comes after those of the modules it imported, so its parent is the
        # next line one level up.
        parent = next((r[0] for r in raw[i + 1:] if r[3] < depth), None) if depth else None
        # A circular package import reports a module twice; the first line is where it ran.
        if name not in seen:
            seen.add(name)
            result.append(ImportLine(name, self_us, cum, depth, parent))
    return result


@functools.lru_cache(maxsize=1)
def _stdlib_names() -> frozenset[str]:
    if sys.version_info >= (3, 10):
        return frozenset(sys.stdlib_module_names) | frozenset(sys.builtin_module_names)
    # 3.9 has no list: what the interpreter's own library directories on sys.path hold
    # (lib/python3.9 and its lib-dynload; a venv's sysconfig paths would name the venv).
    bases = tuple(os.path.join(p, "") for p in {sys.base_prefix, sys.base_exec_prefix})
    own = (f"python{sys.version_info[0]}.{sys.version_info[1]}", "lib-dynload")
    where = [p for p in sys.path if p.startswith(bases) and os.path.basename(p) in own]
    found = {m.name for m in pkgutil.iter_modules(where)}
    return frozenset(found) | frozenset(sys.builtin_module_names)


def is_stdlib(name: str) -> bool:
    return name.split(".")[0] in _stdlib_names()


def outside_stdlib(lines: list[ImportLine], baseline: set[str]) -> list[ImportLine]:
    """The first line of each non-stdlib top-level package not loaded by `python -c pass`."""
    seen: dict[str, ImportLine] = {}
    for line in lines:
        top = line.name.split(".")[0]
        if is_stdlib(line.name) or top in baseline:
            continue
        # Prefer the package's own line (its full cost) over a submodule's.
        if top not in seen or line.name == top:
            seen[top] = line
    return sorted(seen.values(), key=lambda x: -x.cumulative_us)


def inside_other_package(line: ImportLine, lines: list[ImportLine]) -> bool:
    """True when a non-stdlib package outside pep_agent imported this one (its cost is part of
    that package's, e.g. urllib3 under requests)."""
    by_name = {x.name: x for x in lines}
    top = line.name.split(".")[0]
    parent = line.parent
    for _ in range(len(lines)):
        if parent is None:
            return False
        ptop = parent.split(".")[0]
        if ptop not in (top, "pep_agent") and not is_stdlib(parent):
            return True
        above = by_name.get(parent)
        parent = above.parent if above else None
    return False


def importer(line: ImportLine, lines: list[ImportLine]) -> str:
    """The first pep_agent module above this line, or how it was reached."""
    by_name = {x.name: x for x in lines}
    current: ImportLine | None = line
    chain: list[str] = []
    # A circular import (click under typer 0.23) makes a parent chain loop: stop where a name
    # comes back.
    while current is not None and current.parent is not None and current.parent not in chain:
        chain.append(current.parent)
        if current.parent.startswith("pep_agent"):
            return current.parent
        current = by_name.get(current.parent)
    return chain[-1] if chain else "run time (an import inside a function)"


def run_importtime(b: Bench, args: list[str], name: str) -> list[ImportLine]:
    out = b.scratch(f"importtime-{name}")
    done = children.run([b.tools.python, "-X", "importtime", *args], out_dir=out,
                        name="child", timeout=RUN_TIMEOUT, env=b.tools.env())
    if done.returncode < 0 or done.timed_out:
        raise RuntimeError(f"importtime {name}: {done.describe()}")
    return parse(done.err())


def _median_lines(samples: list[list[ImportLine]]) -> list[ImportLine]:
    """Per-module medians over repeated runs (structure from the first run)."""
    cum: dict[str, list[int]] = defaultdict(list)
    own: dict[str, list[int]] = defaultdict(list)
    for sample in samples:
        for line in sample:
            cum[line.name].append(line.cumulative_us)
            own[line.name].append(line.self_us)
    return [ImportLine(x.name, int(summarize(own[x.name]).median),
                       int(summarize(cum[x.name]).median), x.depth, x.parent)
            for x in samples[0]]


def measure(b: Bench) -> Section:
    section = Section("imports", "Import cost (`python -X importtime`)")
    runs = 1 if b.smoke else RUNS
    base = {x.name.split(".")[0] for x in run_importtime(b, ["-c", "pass"], "floor")}
    # Besides the agent, --help and status may load typer (with what typer itself imports) and
    # the standard library, nothing else.
    typer_floor = run_importtime(b, ["-c", "import typer"], "typer")
    light_ok = base | {x.name.split(".")[0] for x in typer_floor} | {"pep_agent"}
    typer_modules = {x.name for x in typer_floor}
    status_args = ["-m", "pep_agent", "status", "--root", str(b.ref_root)]
    status = _median_lines([run_importtime(b, status_args, "status") for _ in range(runs)])
    helps = run_importtime(b, ["-m", "pep_agent", "--help"], "help")
    root, serial = b.new_gateway("importtime")
    provision = run_importtime(b, b.provision_argv(root, serial, head=["-m", "pep_agent"]),
                               "provision")

    section.header = ["module (status path)", "cumulative ms", "self ms", "imported by"]
    for line in sorted(status, key=lambda x: -x.cumulative_us)[:TOP]:
        section.rows.append([f"`{line.name}`", ms(line.cumulative_us / 1e6),
                             ms(line.self_us / 1e6), f"`{line.parent or '-'}`"])
    total_status = sum(x.self_us for x in status) / 1e6
    section.notes.append(f"status imports {len(status)} modules, {total_status * 1000:.1f} ms "
                         f"of import time in all (median of {runs} runs)")

    extra_light: dict[str, list[str]] = {}
    for label, lines in (("--help", helps), ("status", status)):
        foreign = outside_stdlib(lines, light_ok)
        extra_light[label] = [x.name for x in foreign]
        names = ", ".join(f"`{x.name}` ({ms(x.cumulative_us / 1e6)} ms, from "
                          f"`{importer(x, lines)}`)" for x in foreign) or "none"
        section.notes.append(f"{label}: packages beyond typer (and what typer imports), "
                             f"pep_agent and the standard library: {names}")
    beyond = sorted((x for x in status if x.name not in typer_modules),
                    key=lambda x: -x.self_us)
    section.notes.append(
        f"status: {len(beyond)} modules beyond `import typer`, "
        f"{sum(x.self_us for x in beyond) / 1000:.1f} ms self time in all; the heaviest (self "
        "ms, imported by): " + ", ".join(
            f"`{x.name}` {ms(x.self_us / 1e6)} (`{x.parent or 'run time'}`)"
            for x in beyond[:12]))

    third = [x for x in outside_stdlib(provision, base)
             if x.cumulative_us >= NOISE_US and x.name != "pep_agent"
             and not inside_other_package(x, provision)]
    section.notes.append("provision: packages outside the standard library (each with what it "
                         "imports), cumulative ms and where they are imported from: " + ", ".join(
                             f"`{x.name}` {ms(x.cumulative_us / 1e6)} (`{importer(x, provision)}`)"
                             for x in third) + f" (others under {NOISE_US / 1000:g} ms)")
    forbidden = sorted({x.name for x in provision
                        if x.name.startswith(NEVER_ON_PROVISION)})
    section.notes.append("provision: simulator modules or rich imported: "
                         + (", ".join(f"`{n}`" for n in forbidden) or "none"))
    section.targets = [
        Target("packages beyond typer and the stdlib on --help/status",
               float(len(extra_light["--help"]) + len(extra_light["status"])), 0, " modules"),
        Target("sim/rich modules on the provision path", float(len(forbidden)), 0, " modules"),
    ]
    section.data = {
        "status_top": [x.__dict__ for x in sorted(status, key=lambda x: -x.cumulative_us)[:30]],
        "status_outside_stdlib": [x.__dict__ for x in outside_stdlib(status, base)],
        "status_beyond_typer": [x.__dict__ for x in beyond],
        "help_outside_stdlib": [x.__dict__ for x in outside_stdlib(helps, base)],
        "provision_outside_stdlib": [
            {**x.__dict__, "importer": importer(x, provision)} for x in third],
        "provision_forbidden": forbidden,
        "provision_pep_agent_modules": sorted(x.name for x in provision
                                              if x.name.startswith("pep_agent")),
    }
    return section
