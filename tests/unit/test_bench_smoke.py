"""bench/run.py (`make bench`) still starts and runs one tiny iteration of every measurement,
and its pure helpers compute what the report says. No timings are asserted: figures belong to
the benchmark itself."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.imports import (  # noqa: E402
    importer,
    inside_other_package,
    is_stdlib,
    outside_stdlib,
    parse,
)
from bench.stats import percentile, summarize  # noqa: E402

RUN = REPO / "bench" / "run.py"
SECTIONS = {"cold_start", "imports", "overhead", "memory", "line", "sim", "syncattrs"}
# The benchmarks run the simulated server (the 'sim' extra) and draw with matplotlib: the
# 'bench' extra holds both.
needs_bench_extra = pytest.mark.skipif(
    any(importlib.util.find_spec(m) is None for m in ("matplotlib", "cryptography")),
    reason="the 'bench' extra (matplotlib, cryptography) is not installed")
needs_sim_extra = pytest.mark.skipif(importlib.util.find_spec("cryptography") is None,
                                     reason="the 'sim' extra (cryptography) is not installed")


def _bench(*args: str, timeout: float = 100) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(RUN), *args], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL, check=False)


@pytest.mark.spawns
@needs_bench_extra
def test_smoke_run_measures_everything_and_writes_results(tmp_path: Path) -> None:
    out = tmp_path / "results"
    done = _bench("--smoke", "--out", str(out))
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    doc = json.loads((out / "results.json").read_text())
    assert set(doc["sections"]) == SECTIONS
    for key, section in doc["sections"].items():
        assert section["errors"] == [], key
        assert section["rows"], key
    assert doc["targets"], "no target was evaluated"
    assert all(isinstance(t["value"], (int, float)) for t in doc["targets"]), doc["targets"]
    line = doc["sections"]["line"]["data"]["runs"][0]
    assert line["records"] == line["size"] == len(line["walls_s"]) == 2
    assert not line["failed"] and not line["duplicated"]
    assert (out / "results.md").read_text().startswith("# pep-agent benchmark results")
    assert (out / "line-throughput.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.spawns
def test_list_names_the_measurements() -> None:
    done = _bench("--list", timeout=30)
    assert done.returncode == 0, done.stderr
    assert [ln.split()[0] for ln in done.stdout.splitlines()] == [
        "cold", "imports", "provision", "line", "sim", "syncattrs"]


@pytest.mark.spawns
def test_unknown_measurement_is_a_usage_error() -> None:
    done = _bench("--only", "nope", timeout=30)
    assert done.returncode == 2
    assert "unknown measurement" in done.stderr


def test_importtime_lines_know_who_imported_them() -> None:
    text = ("import time: self [us] | cumulative | imported package\n"
            "import time:        10 |         10 |     requests.compat\n"
            "import time:        20 |         30 |   requests\n"
            "import time:         5 |         35 | pep_agent.system.http\n"
            "import time:         7 |          7 | psutil\n"
            "import time:         3 |          3 | json\n")
    lines = parse(text)
    assert [(x.name, x.parent, x.depth) for x in lines] == [
        ("requests.compat", "requests", 2), ("requests", "pep_agent.system.http", 1),
        ("pep_agent.system.http", None, 0), ("psutil", None, 0), ("json", None, 0)]
    assert lines[1].cumulative_us == 30 and lines[1].self_us == 20
    assert importer(lines[0], lines) == "pep_agent.system.http"
    assert importer(lines[3], lines).startswith("run time")
    foreign = outside_stdlib(lines, baseline={"pep_agent"})
    assert [x.name for x in foreign] == ["requests", "psutil"]


def test_percentiles_interpolate_and_summaries_spread() -> None:
    assert percentile([4.0, 1.0, 3.0, 2.0], 50) == 2.5
    assert percentile([1.0, 2.0, 3.0, 4.0], 0) == 1.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 100) == 4.0
    s = summarize([1.0, 2.0, 3.0, 4.0, 100.0])
    assert (s.n, s.median, s.min, s.max, s.p25, s.p75) == (5, 3.0, 1.0, 100.0, 2.0, 4.0)
    assert summarize([]).n == 0


def test_a_package_imported_by_another_is_not_counted_twice() -> None:
    text = ("import time:        10 |         10 |       urllib3.util\n"
            "import time:        20 |         30 |     urllib3\n"
            "import time:        20 |         50 |   requests\n"
            "import time:         5 |         55 | pep_agent.system.http\n")
    lines = parse(text)
    assert [inside_other_package(x, lines) for x in lines] == [True, True, False, False]


def test_a_module_reported_twice_counts_once() -> None:
    text = ("import time:        10 |         10 |       pkg.errors\n"
            "import time:        20 |         30 |     pkg\n"
            "import time:         1 |         31 |   pkg.errors\n"
            "import time:         5 |         36 | app\n")
    lines = parse(text)
    assert [(x.name, x.parent) for x in lines] == [
        ("pkg.errors", "pkg"), ("pkg", "pkg.errors"), ("app", None)]


def test_an_import_cycle_ends_the_walk() -> None:
    # typer 0.23 imports click from inside click: the parent chain comes back on itself.
    text = ("import time:        10 |         10 |       click\n"
            "import time:        20 |         30 |     click.core\n"
            "import time:        20 |         50 |   click\n"
            "import time:         5 |         55 | typer\n")
    lines = parse(text)
    assert [(x.name, x.parent) for x in lines] == [
        ("click", "click.core"), ("click.core", "click"), ("typer", None)]
    assert importer(lines[0], lines) == "click"
    assert importer(lines[1], lines) == "click.core"


def test_stdlib_is_told_from_installed_packages() -> None:
    assert is_stdlib("json") and is_stdlib("os.path") and is_stdlib("sys")
    assert is_stdlib("_ssl") and is_stdlib("xml.etree")
    assert not is_stdlib("requests") and not is_stdlib("pep_agent.flow")


def _started(bench: subprocess.Popen[str]) -> str:
    """Waits (bounded) for the benchmark's announcement of its server; its work directory."""
    assert bench.stdout is not None
    line = ""
    for _ in range(50):
        line = bench.stdout.readline()
        if not line or line.startswith("bench: simulated pep server at"):
            break
    assert line.startswith("bench: simulated pep server at"), line
    return line.rsplit("work directory ", 1)[1].strip()


def _inside(work: str, *, by_cwd: bool = True) -> list[psutil.Process]:
    """Processes of a benchmark: their command line (or directory) is in its work dir."""
    found = []
    for p in psutil.process_iter():
        try:
            if any(work in arg for arg in p.cmdline()) or (by_cwd and p.cwd().startswith(work)):
                found.append(p)
        except psutil.Error:
            continue
    return found


@pytest.mark.spawns
@needs_sim_extra
@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL])
def test_the_simulated_server_ends_with_the_benchmark(tmp_path: Path,
                                                      how: signal.Signals) -> None:
    bench = subprocess.Popen([sys.executable, str(RUN), "--smoke", "--only", "sim", "--no-plot",
                              "--out", str(tmp_path / "results")], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, text=True,
                             start_new_session=True)
    work = ""
    try:
        work = _started(bench)
        server = [p for p in _inside(work) if "server" in p.cmdline()]
        assert len(server) == 1, server
        os.kill(bench.pid, how)
        assert bench.wait(timeout=60) == (-how if how == signal.SIGKILL else 128 + how)
        gone, alive = psutil.wait_procs(server, timeout=30)
        assert gone and not alive, f"{server} outlived the benchmark"
        if how == signal.SIGTERM:  # it stops every child it started, not only the server
            assert not _inside(work, by_cwd=False)
    finally:
        if bench.poll() is None:
            bench.kill()
            bench.wait(timeout=30)
        # After SIGKILL (or a failure here) a provision it had started may still be running.
        for leftover in _inside(work) if work else []:
            leftover.kill()
        assert bench.stdout is not None
        bench.stdout.close()
