"""The Yocto recipe's run-ptest, run against an installed copy laid out as do_install_ptest does.

The copy: a venv holding pep_agent as the package installs it (no checkout on its path) and the
test environment's libraries, and the unit tests with their helpers in a ptest directory.
The unit tests already run in `make test`: here the runner gets a few of them, enough to show
its lines, its exclusions and the installed layout; PEP_PTEST_FULL=1 (`make ptest`, in
.ci/run) gives it all of them.
"""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RUN_PTEST = REPO / "packaging/yocto/recipes-connectivity/pep-agent/files/run-ptest"
SPACED = "PASS: tests/unit/test_sim_query.py::test_decode_uri[a%20b-a b]"
FULL = os.environ.get("PEP_PTEST_FULL") == "1"
# A test id with a space, a test reading the installed systemd units, and the benchmarks' test
# (which the runner must leave out: bench/ is not on a target).
SAMPLE = ("test_sim_query.py", "test_lock.py", "test_bench_smoke.py")
# run-ptest with every unit test took 101 to 166 s on two loaded cores, past the project's
# per-test timeout (120 s): each run of it gets its own bound, and the test a margin above it
# for the venv and the layout.
RUN_LIMIT = 1200 if FULL else 600
pytestmark = pytest.mark.timeout(RUN_LIMIT + 300)


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """bin/ of a venv where pep_agent is installed, not imported from the checkout."""
    venv = tmp_path_factory.mktemp("target") / "venv"
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; "
                              "print(sysconfig.get_paths()['purelib'])"], capture_output=True,
                             text=True, check=True, timeout=60).stdout.strip()
    shutil.copytree(REPO / "pep_agent", Path(purelib) / "pep_agent",
                    ignore=shutil.ignore_patterns("__pycache__"))
    # The libraries (pytest, typer, ...) of the environment running this test; a directory
    # named in a .pth file is added as it is, so the checkout's editable hook there stays out.
    libs = [sysconfig.get_paths()["purelib"], *site.getsitepackages()]
    (Path(purelib) / "test-libraries.pth").write_text("\n".join(dict.fromkeys(libs)) + "\n")
    return venv / "bin"


def lay_out(where: Path) -> Path:
    """The recipe's do_install_ptest: tests/unit, the helpers tests/*.py, the unit files,
    run-ptest."""
    tests = where / "tests"
    skipped = ["__pycache__"] if FULL else ["__pycache__", "test_*.py"]
    shutil.copytree(REPO / "tests/unit", tests / "unit", ignore=shutil.ignore_patterns(*skipped))
    for name in () if FULL else SAMPLE:
        shutil.copy(REPO / "tests/unit" / name, tests / "unit")
    for helper in (REPO / "tests").glob("*.py"):
        shutil.copy(helper, tests)
    (where / "systemd").mkdir()
    for unit in (REPO / "systemd").glob("*.service"):
        shutil.copy(unit, where / "systemd")
    shutil.copy(RUN_PTEST, where / "run-ptest")
    return where / "run-ptest"


def run(script: Path, bin_dir: Path) -> tuple[int, list[str]]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTEST_ADDOPTS")}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    done = subprocess.run(["sh", str(script)], cwd="/", env=env, capture_output=True, text=True,
                          timeout=RUN_LIMIT, check=False)
    return done.returncode, done.stdout.splitlines()


def test_runs_the_unit_tests_with_one_line_each(tmp_path: Path, target: Path) -> None:
    code, out = run(lay_out(tmp_path), target)
    results = [ln for ln in out if ln.startswith(("PASS: ", "FAIL: ", "SKIP: "))]
    assert code == 0, "\n".join(out[-40:])
    assert not [ln for ln in results if ln.startswith("FAIL: ")]
    passed = [ln for ln in results if ln.startswith("PASS: ")]
    assert len(passed) > (100 if FULL else 20)
    if not FULL:  # every copied file ran, the benchmarks' excepted
        assert {ln.split("::")[0].rsplit("/", 1)[1] for ln in passed} == set(SAMPLE[:-1])
    assert SPACED in results  # a test id with a space is kept whole
    assert not [ln for ln in results if "bench" in ln]  # bench/ is not on a target
    assert len(results) == len(set(results))


def test_a_collection_error_or_a_failure_fails(tmp_path: Path, target: Path) -> None:
    script = lay_out(tmp_path)
    unit = tmp_path / "tests/unit"
    for test in unit.glob("test_*.py"):
        test.unlink()
    (unit / "test_broken.py").write_text("import no_such_module_anywhere\n")
    (unit / "test_spaced.py").write_text(
        "import pytest\n\n\n@pytest.mark.parametrize('x', ['a b', 'c'])\n"
        "def test_x(x):\n    assert x == 'c'\n")
    code, out = run(script, target)
    assert code == 1
    assert "FAIL: tests/unit/test_broken.py (not collected)" in out
    assert "FAIL: tests/unit/test_spaced.py::test_x[a b]" in out
    assert "PASS: tests/unit/test_spaced.py::test_x[c]" in out


def test_no_tests_is_a_failure(tmp_path: Path, target: Path) -> None:
    script = lay_out(tmp_path)
    for test in (tmp_path / "tests/unit").glob("test_*.py"):
        test.unlink()
    code, out = run(script, target)
    assert code == 1
    assert "FAIL: pep-agent-ptest: no test was collected" in out
