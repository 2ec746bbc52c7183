#!/usr/bin/env python3
"""`make matrix`: the tests on every target as it ships, plus one newest-libraries run.

A target (kirkstone, scarthgap, Debian bookworm, trixie) is its Python and the exact versions
its recipes or archive hold, listed in .ci/targets.json (written by .ci/refresh-targets.py).
Each target gets a venv on that Python with exactly those versions installed `--no-deps`, as
an image has them, and the project on top; the unit and the integration tests run on every
target (targets.json's "tests"). A package pyproject.toml declares that a target does not ship,
or ships outside what pyproject.toml accepts, gets the lowest version it accepts, and the run
says so; an undeclared package the target lacks is left out, as on the image.
The newest run lets pip resolve the project's extras on the oldest and the newest Python.

Interpreters are found as `pythonX.Y` on PATH or under `pyenv root`; a target whose Python is
missing is skipped with the reason. Venvs are cached under PEP_MATRIX_CACHE (default
/var/tmp/pep-agent-matrix), keyed by what shapes them. Side effects: creates and removes venvs
below the cache directory (pip downloads; old sdists are compiled, systemd-python needs gcc and
libsystemd's headers), runs pytest with the checkout as working directory, writes one log per
step below the cache directory. Exit status: 0 every run passed, 1 one failed or could not be
set up, 2 usage.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

REPO = Path(__file__).resolve().parent.parent
TARGETS = REPO / ".ci" / "targets.json"
NEWEST_EXTRAS = "dev,sim,bench"
# What builds the sdists a target's old versions come as (cbor2 5.4's setup.py imports
# pkg_resources, which setuptools 70 dropped), and the project itself.
BUILD_TOOLS = ("setuptools<70", "wheel", "flit_core>=3.7.1,<4")
SETUP_TIMEOUT = 1800.0
RUN_TIMEOUT = 1800.0


def cache_dir() -> Path:
    # Beside the virtual gateway's cache; CI runs as root on a machine of its own.
    return Path(os.environ.get("PEP_MATRIX_CACHE", "/var/tmp/pep-agent-matrix"))  # noqa: S108


def _key(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


@contextlib.contextmanager
def _locked(directory: Path, name: str) -> Iterator[None]:
    """Serialise the builders of one venv: two checkouts on one machine share the cache."""
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / f"lock-{name}", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _run(argv: list[str], log: Path, timeout: float) -> None:
    with open(log, "a") as out:
        print("$", " ".join(argv), file=out, flush=True)
        subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                       check=True, timeout=timeout, cwd=REPO)


def find_python(version: str) -> Path | None:
    """The newest X.Y.* in `pyenv root`'s versions, else a real pythonX.Y on PATH.

    pyenv's shims are passed over: a shim answers for any version name and fails (127) when
    the selected pyenv version is another one.
    """
    root: Path | None = None
    if shutil.which("pyenv") is not None:
        done = subprocess.run(["pyenv", "root"], capture_output=True, text=True, timeout=60,
                              check=False)
        root = Path(done.stdout.strip()) if done.returncode == 0 and done.stdout.strip() else None
    if root is not None:
        found = [p for p in (root / "versions").glob(f"{version}.*/bin/python{version}")
                 if re.fullmatch(rf"{re.escape(version)}\.\d+", p.parent.parent.name)]
        if found:
            return max(found, key=lambda p: Version(p.parent.parent.name))
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        candidate = Path(directory) / f"python{version}"
        if root is not None and candidate.parent == root / "shims":
            continue
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


@dataclass
class Plan:
    """One venv: its Python, what goes in it, and which tests run there."""

    name: str
    python: str
    tests: list[str]
    pins: list[str] = field(default_factory=list)  # empty: pip resolves the newest
    notes: list[str] = field(default_factory=list)


def _declared() -> dict[str, Requirement]:
    """pyproject.toml's requirements (runtime and every extra), by normalised name."""
    text = (REPO / "pyproject.toml").read_text()
    found: dict[str, Requirement] = {}
    for quoted in re.findall(r'^\s*"([A-Za-z][^"]*)",', text, flags=re.MULTILINE):
        try:
            req = Requirement(quoted)
        except ValueError:
            continue
        found[_norm(req.name)] = req
    return found


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _lowest_accepted(req: Requirement) -> str | None:
    lows = [s.version for s in req.specifier if s.operator in (">=", "==", "~=")]
    return lows[0] if lows else None


def plans(doc: dict[str, object], chosen: list[str]) -> list[Plan]:
    declared = _declared()
    targets = doc["targets"]
    assert isinstance(targets, dict)
    out: list[Plan] = []
    for name in chosen:
        if name.startswith("newest-"):
            newest = doc["newest"]
            assert isinstance(newest, dict)
            out.append(Plan(name, name.split("-", 1)[1], list(newest["tests"])))
            continue
        target = targets[name]
        plan = Plan(name, target["python"], list(target["tests"]))
        for pypi, entry in target["packages"].items():
            version = entry.get("pypi") or entry["version"]
            req = declared.get(_norm(pypi))
            if req is not None and (version is None or Version(version) not in req.specifier):
                lowest = _lowest_accepted(req)
                shipped = f"{entry['version']} ({entry['from']})" if version else "not shipped"
                if lowest is None:
                    plan.notes.append(f"{pypi}: {shipped}, outside {req}; left out")
                    continue
                plan.notes.append(f"{pypi}: {shipped}, outside {req}; {lowest} installed")
                version = lowest
            if version is not None:
                plan.pins.append(f"{pypi}=={version}")
            if entry.get("pypi"):
                plan.notes.append(f"{pypi} {entry['version']}: PyPI's {entry['pypi']} installed "
                                  "(the same release, installable)")
        out.append(plan)
    return out


class SetupError(Exception):
    """A venv could not be set up; the message says which and where the log is."""


def venv_for(plan: Plan, python: Path, log: Path) -> Path:
    project = (REPO / "pyproject.toml").read_text()
    key = _key(plan.name, str(python), plan.pins, project, BUILD_TOOLS, str(REPO))
    venv = cache_dir() / f"venv-{plan.name}-{key}"
    with _locked(cache_dir(), f"venv-{plan.name}"):
        if (venv / ".complete").is_file():
            return venv
        for stale in cache_dir().glob(f"venv-{plan.name}-*"):
            shutil.rmtree(stale, ignore_errors=True)
        pip = [f"{venv}/bin/python", "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        if plan.pins:
            steps = [[*pip, *BUILD_TOOLS],
                     [*pip, "--no-deps", "--no-build-isolation", *plan.pins],
                     [*pip, "--no-deps", "--no-build-isolation", "-e", str(REPO)]]
        else:
            steps = [[*pip, "--upgrade", "pip"], [*pip, "-e", f"{REPO}[{NEWEST_EXTRAS}]"]]
        try:
            _run([str(python), "-m", "venv", str(venv)], log, SETUP_TIMEOUT)
            for argv in steps:
                _run(argv, log, SETUP_TIMEOUT)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as e:
            raise SetupError(f"venv set-up failed ({e}); see {log}") from None
        # What pip thinks of the mix (an image is not checked this way): logged, not judged.
        with open(log, "a") as out:
            subprocess.run([f"{venv}/bin/python", "-m", "pip", "check"], stdout=out,
                           stderr=subprocess.STDOUT, timeout=120, check=False)
        (venv / ".complete").write_text(key + "\n")
    return venv


@dataclass
class Outcome:
    name: str
    what: str
    summary: str
    seconds: float
    ok: bool
    log: Path


SUMMARY = re.compile(r"^=*\s*(\d+ (passed|failed|skipped|error).*?)\s*=*$")


def run_tests(plan: Plan, venv: Path, what: str, log: Path) -> Outcome:
    argv = [f"{venv}/bin/python", "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
            "-o", "addopts=", f"tests/{what}"]
    started = time.monotonic()
    with open(log, "w") as out:
        try:
            code = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, timeout=RUN_TIMEOUT, check=False,
                                  cwd=REPO).returncode
        except subprocess.TimeoutExpired:
            code = -1
    lines = log.read_text(errors="replace").splitlines()
    found = next((m.group(1) for ln in reversed(lines) if (m := SUMMARY.match(ln))), None)
    summary = found or f"no pytest summary (exit {code})"
    return Outcome(plan.name, what, summary, time.monotonic() - started,
                   code == 0 and found is not None, log)


def parse_args(argv: list[str], doc: dict[str, object]) -> argparse.Namespace:
    targets = doc["targets"]
    newest = doc["newest"]
    assert isinstance(targets, dict) and isinstance(newest, dict)
    known = [*targets, *(f"newest-{v}" for v in newest["pythons"])]
    p = argparse.ArgumentParser(prog=".ci/matrix.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--only", default=",".join(known),
                   help="comma-separated runs (default: %(default)s)")
    p.add_argument("--unit-only", action="store_true", help="skip the integration tests")
    args = p.parse_args(argv)
    args.only = [v for v in args.only.split(",") if v]
    unknown = [v for v in args.only if v not in known]
    if unknown:
        p.error(f"--only: unknown run(s) {', '.join(unknown)}; choose from {', '.join(known)}")
    return args


def main(argv: list[str]) -> int:
    doc = json.loads(TARGETS.read_text())
    args = parse_args(argv, doc)
    logs = cache_dir() / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    outcomes: list[Outcome] = []
    broken: list[str] = []
    started = time.monotonic()
    for plan in plans(doc, args.only):
        for note in plan.notes:
            print(f"matrix: {plan.name}: {note}", flush=True)
        python = find_python(plan.python)
        if python is None:
            print(f"matrix: {plan.name}: SKIPPED, no python{plan.python} on PATH or in pyenv",
                  flush=True)
            continue
        setup_log = logs / f"setup-{plan.name}.log"
        setup_log.write_text("")
        began = time.monotonic()
        try:
            venv = venv_for(plan, python, setup_log)
        except SetupError as e:
            print(f"matrix: {plan.name}: {e}", flush=True)
            broken.append(plan.name)
            continue
        print(f"matrix: {plan.name}: venv on {python} ready "
              f"[{time.monotonic() - began:.0f} s]", flush=True)
        for what in plan.tests:
            if what == "integration" and args.unit_only:
                continue
            outcome = run_tests(plan, venv, what, logs / f"{what}-{plan.name}.log")
            outcomes.append(outcome)
            mark = "ok" if outcome.ok else "FAILED"
            print(f"matrix: {plan.name} (Python {plan.python}) {what}: {outcome.summary} "
                  f"[{outcome.seconds:.0f} s wall] {mark}", flush=True)
            if not outcome.ok:
                print(f"matrix: log: {outcome.log}", flush=True)
    failed = [o for o in outcomes if not o.ok]
    print(f"matrix: {len(outcomes) - len(failed)}/{len(outcomes)} runs passed, "
          f"{len(broken)} set-up failures, in {time.monotonic() - started:.0f} s", flush=True)
    return 1 if failed or broken else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
