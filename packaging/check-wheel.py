"""Builds pep-agent's wheel as each supported Yocto branch does, and checks what it contains.

For every branch in BRANCHES: a virtualenv on that branch's Python holding exactly its build
tools (from PyPI, cached between runs), then oe-core's python_pep517 steps without build
isolation (kirkstone calls the back-end's build_wheel directly, scarthgap runs
`python -m build --no-isolation --wheel`), then `python -m installer` into a destdir. The check
fails unless the wheel is pep_agent-<version>-py3-none-any.whl, holds the pep_agent package and
its metadata only, and the installed metadata carries the name, version, Requires-Dist and
console script that pyproject.toml declares.

Side effects: creates and reuses tool virtualenvs under the cache directory
($PEP_AGENT_CACHE, else $XDG_CACHE_HOME/pep-agent, else ~/.cache/pep-agent); builds in a
temporary directory. Needs the branches' interpreters: `pyenv prefix X.Y` when pyenv exists,
else pythonX.Y on PATH. Needs Python >= 3.11 itself (tomllib).

Usage: python packaging/check-wheel.py [BRANCH ...]    (default: all of them)
"""

from __future__ import annotations

import email.parser
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Branch:
    name: str
    python: str  # major.minor
    tools: tuple[str, ...]  # the versions oe-core ships on that branch
    build: tuple[str, ...]  # python_pep517's compile step, {out} = the wheel directory


BRANCHES = (
    Branch(
        "kirkstone",
        "3.10",
        ("setuptools==59.5.0", "flit-core==3.7.1", "installer==0.5.1", "wheel==0.37.1"),
        # kirkstone has no `build`: the class imports PEP517_BUILD_API (the back-end) itself.
        ("-c", "import {backend} as api; api.build_wheel('{out}')"),
    ),
    Branch(
        "scarthgap",
        "3.12",
        (
            "setuptools==69.1.1",
            "flit-core==3.9.0",
            "build==1.1.1",
            "installer==0.7.0",
            "wheel==0.42.0",
        ),
        ("-m", "build", "--no-isolation", "--wheel", "--outdir", "{out}", "."),
    ),
)


class CheckFailed(Exception):
    pass


def cache_dir() -> Path:
    if os.environ.get("PEP_AGENT_CACHE"):
        return Path(os.environ["PEP_AGENT_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "pep-agent"


def interpreter(version: str) -> str:
    if shutil.which("pyenv"):
        done = subprocess.run(
            ["pyenv", "prefix", version], capture_output=True, text=True, check=False
        )
        if done.returncode == 0:
            return str(Path(done.stdout.strip().splitlines()[-1]) / "bin" / f"python{version}")
    found = shutil.which(f"python{version}")
    if not found:
        raise CheckFailed(f"no Python {version}: install it (pyenv install {version})")
    return found


def tool_venv(branch: Branch) -> Path:
    """The branch's tool virtualenv, rebuilt only when its pins change."""
    venv = cache_dir() / "wheel-check" / f"{branch.name}-py{branch.python}"
    stamp = venv / "pins.txt"
    pins = "\n".join(branch.tools) + "\n"
    if stamp.is_file() and stamp.read_text() == pins:
        return venv
    shutil.rmtree(venv, ignore_errors=True)
    run([interpreter(branch.python), "-m", "venv", "--without-pip", str(venv)])
    # pip comes from the interpreter's ensurepip only to install the pins; then it is removed,
    # so nothing but the branch's tools can satisfy the build's imports.
    run([str(venv / "bin" / "python"), "-m", "ensurepip", "--default-pip"], quiet=True)
    run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q",
         "--disable-pip-version-check", *branch.tools], quiet=True)
    run([str(venv / "bin" / "python"), "-m", "pip", "uninstall", "-q", "-y", "pip"])
    stamp.write_text(pins)
    return venv


def run(argv: list[str], cwd: Path | None = None, quiet: bool = False) -> None:
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise CheckFailed(f"{' '.join(argv)} exited {done.returncode}:\n{done.stdout}{done.stderr}")
    if not quiet and done.stderr.strip():
        print(done.stderr.strip(), file=sys.stderr)


def expected() -> tuple[str, str, set[str], dict[str, str]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requires = set(project["dependencies"])
    return project["name"], project["version"], requires, dict(project["scripts"])


def normalise(requirement: str) -> str:
    """A Requires-Dist line and a pyproject dependency compare equal if equal without spaces
    and quote style (back-ends format markers differently)."""
    return requirement.replace(" ", "").replace('"', "'")


def check_branch(branch: Branch, work: Path) -> str:
    name, version, requires, scripts = expected()
    venv = tool_venv(branch)
    python = str(venv / "bin" / "python")
    out, dest = work / "dist", work / "dest"
    out.mkdir()
    backend = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]["build-backend"]
    build = [python, *(a.format(out=out, backend=backend) for a in branch.build)]
    run(build, cwd=ROOT)
    wheels = sorted(out.glob("*.whl"))
    dist = name.replace("-", "_")
    want = f"{dist}-{version}-py3-none-any.whl"
    if [w.name for w in wheels] != [want]:
        raise CheckFailed(f"built {[w.name for w in wheels]}, expected [{want}]")
    with zipfile.ZipFile(wheels[0]) as wheel:
        tops = {n.split("/", 1)[0] for n in wheel.namelist()}
    if tops != {dist, f"{dist}-{version}.dist-info"}:
        raise CheckFailed(f"the wheel holds {sorted(tops)}, expected pep_agent and its dist-info")
    # As python_pep517's install step (less --interpreter, which is a patch of oe-core's).
    run([python, "-m", "installer", "--compile-bytecode=0", f"--destdir={dest}", str(wheels[0])])
    infos = list(dest.rglob(f"{dist}-{version}.dist-info"))
    if len(infos) != 1:
        raise CheckFailed(f"installed {len(infos)} {dist}-{version}.dist-info directories")
    meta = email.parser.Parser().parsestr((infos[0] / "METADATA").read_text())
    listed = meta.get_all("Requires-Dist") or []
    got_requires = {normalise(r) for r in listed if "extra ==" not in r}
    problems = []
    if (meta["Name"], meta["Version"]) != (name, version):
        problems.append(f"metadata names {meta['Name']} {meta['Version']}")
    if got_requires != {normalise(r) for r in requires}:
        problems.append(f"Requires-Dist {sorted(got_requires)} != {sorted(requires)}")
    entry_points = (infos[0] / "entry_points.txt").read_text()
    for command, target in scripts.items():
        if not {f"{command} = {target}", f"{command}={target}"} & set(entry_points.splitlines()):
            problems.append(f"no console script {command} = {target}")
        if not list(dest.rglob(f"bin/{command}")):
            problems.append(f"installer wrote no bin/{command}")
    if problems:
        raise CheckFailed("; ".join(problems))
    tools = ", ".join(t.replace("==", " ") for t in branch.tools)
    return f"{branch.name}: Python {branch.python}, {tools}: {want} OK"


def main(argv: list[str]) -> int:
    chosen = [b for b in BRANCHES if not argv or b.name in argv]
    unknown = set(argv) - {b.name for b in BRANCHES}
    if unknown:
        print(f"check-wheel: unknown branch {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    failed = False
    for branch in chosen:
        with tempfile.TemporaryDirectory(prefix="pep-agent-wheel-") as work:
            try:
                print(f"check-wheel: {check_branch(branch, Path(work))}")
            except CheckFailed as e:
                print(f"check-wheel: {branch.name}: FAILED: {e}", file=sys.stderr)
                failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
