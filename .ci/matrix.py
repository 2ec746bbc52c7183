#!/usr/bin/env python3
"""`make matrix`: the unit tests on every supported Python, the integration tests on the oldest
and the newest (the development venv's `make test` covers its own version).

Interpreters come from pyenv (`pyenv prefix 3.9`). Where pyenv has none, 3.9 and 3.13 fall
back to a Debian root made with debootstrap (bullseye ships 3.9, trixie 3.13) in which the tests
run under chroot; `--debian 3.9,3.13` forces that. Each version gets its own virtualenv with
the project installed in editable mode and the dev, sim and bench extras; venvs and roots are
cached under PEP_MATRIX_CACHE (default /var/tmp/pep-agent-matrix), keyed by what shapes them,
and rebuilt when that changes.

Side effects: creates and removes venvs and roots below the cache directory (pip downloads,
debootstrap as root), runs pytest there with the checkout as its working directory, writes
one log per run below the cache directory. Exit status: 0 when every run passed, 1 otherwise,
2 on a usage error or an interpreter that cannot be found or set up.
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
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VERSIONS = ("3.9", "3.10", "3.11", "3.12", "3.13")
# 3.11 is the development venv's version: `make test` runs it in full.
DEFAULT_VERSIONS = ("3.9", "3.10", "3.12", "3.13")
INTEGRATION_ON = ("3.9", "3.13")
# The oldest interpreter also checks the oldest `cryptography` the sim extra accepts
# (Yocto kirkstone's).
OLDEST_PINS = ("cryptography==36.0.2",)
# bench: the benchmarks' smoke run (with matplotlib) is part of the unit tests.
EXTRAS = "dev,sim,bench"

SUITES = {"3.9": "bullseye", "3.13": "trixie"}
MIRROR = "http://deb.debian.org/debian"
# What the tests need in a Debian root: the interpreter, a compiler and libsystemd's headers for
# systemd-python, and the command-line tools the tests call.
ROOT_PACKAGES = ("python3", "python3-venv", "python3-dev", "gcc", "libc6-dev", "pkg-config",
                 "libsystemd-dev", "openssl", "jq", "curl", "iproute2", "ca-certificates",
                 "procps")
ROOT_LAYOUT = "1"  # bump when the root preparation changes in a way the lists do not show

SETUP_TIMEOUT = 1800.0
RUN_TIMEOUT = 1800.0


def cache_dir() -> Path:
    # Beside the virtual gateway's cache; CI runs as root on a machine of its own.
    return Path(os.environ.get("PEP_MATRIX_CACHE", "/var/tmp/pep-agent-matrix"))  # noqa: S108


def _key(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


@contextlib.contextmanager
def _locked(directory: Path, name: str) -> Iterator[None]:
    """Serialise the builders of one item: two checkouts on one machine share the cache."""
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / f"lock-{name}", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _run(argv: list[str], log: Path, timeout: float, cwd: Path | None = None) -> None:
    with open(log, "a") as out:
        print("$", " ".join(argv), file=out, flush=True)
        subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                       check=True, timeout=timeout, cwd=cwd)


def _unmount_below(path: Path) -> None:
    """Unmount what is mounted below path (debootstrap mounts proc and sys in its target)."""
    prefix = str(path.resolve()) + "/"
    with open("/proc/mounts") as mounts:
        points = sorted((ln.split()[1] for ln in mounts if ln.split()[1].startswith(prefix)),
                        key=len, reverse=True)
    for point in points:
        subprocess.run(["umount", "-l", point], check=False, timeout=60)


def _remove_tree(path: Path) -> None:
    _unmount_below(path)
    subprocess.run(["rm", "-rf", "--one-file-system", str(path)], check=False, timeout=600)


@dataclass(frozen=True)
class Interpreter:
    version: str  # "3.9"
    python: Path  # as run by `prefix`
    origin: str  # "pyenv" or "debian <suite>"
    root: Path | None = None  # the Debian root the tests run in, under chroot

    def command(self, argv: list[str], cwd: str) -> list[str]:
        """argv run in cwd, inside the root when there is one (the checkout is /src there)."""
        if self.root is None:
            return argv
        # A private mount namespace: the bind mounts end with the command, whatever happens.
        inner = ("mount --rbind /dev \"$R/dev\" && mount -t proc proc \"$R/proc\" && "
                 "mount -t sysfs sys \"$R/sys\" && "
                 "mount --bind \"$S\" \"$R/src\" && cp /etc/resolv.conf \"$R/etc/resolv.conf\" && "
                 # pip in the root trusts what the host trusts (a proxy's CA, say).
                 "mount --bind /etc/ssl/certs \"$R/etc/ssl/certs\" && "
                 "exec chroot \"$R\" /usr/bin/env -C \"$C\" \"$@\"")
        return ["unshare", "--mount", "--propagation", "private", "--", "env",
                f"R={self.root}", f"S={REPO}", f"C={cwd}", "sh", "-c", inner, "matrix", *argv]


def pyenv_interpreter(version: str) -> Interpreter | None:
    if shutil.which("pyenv") is None:
        return None
    done = subprocess.run(["pyenv", "prefix", version], capture_output=True, text=True,
                          timeout=60, check=False)
    lines = done.stdout.strip().splitlines() if done.returncode == 0 else []
    python = Path(lines[-1]) / "bin" / f"python{version}" if lines else None
    if python is None or not python.exists():
        return None
    return Interpreter(version, python, "pyenv")


def debian_interpreter(version: str, log: Path) -> Interpreter:
    """The cached Debian root whose python3 is `version`, built first when absent."""
    suite = SUITES.get(version)
    if suite is None:
        raise SetupError(f"no pyenv {version} and no Debian release to fall back to")
    if shutil.which("debootstrap") is None and not Path("/usr/sbin/debootstrap").exists():
        raise SetupError(f"no pyenv {version}; the Debian fallback needs debootstrap (apt)")
    base = cache_dir()
    key = _key(suite, MIRROR, ROOT_PACKAGES, ROOT_LAYOUT)
    root = base / f"root-{suite}-{key}"
    with _locked(base, f"root-{suite}"):
        if not (root / ".complete").is_file():
            for stale in [*base.glob(f"root-{suite}-*"), *base.glob(f"build-{suite}-*")]:
                _remove_tree(stale)
            build = base / f"build-{suite}-{key}-{os.getpid()}"
            try:
                _run(["debootstrap", "--variant=minbase",
                      f"--include={','.join(ROOT_PACKAGES)}", suite, str(build), MIRROR],
                     log, SETUP_TIMEOUT)
            finally:
                _unmount_below(build)
            (build / "src").mkdir()
            (build / ".complete").write_text(key + "\n")
            build.rename(root)
    return Interpreter(version, Path(f"/usr/bin/python{version}"), f"debian {suite}", root)


class SetupError(Exception):
    """An interpreter or its venv could not be set up; the message says which."""


def venv_for(interp: Interpreter, log: Path) -> Path:
    """The cached venv (its path as the interpreter sees it) with the project installed."""
    pins = OLDEST_PINS if interp.version == VERSIONS[0] else ()
    project = (REPO / "pyproject.toml").read_text()
    # Outside a root the editable install points at this checkout; inside one it is /src.
    where = "/src" if interp.root else str(REPO)
    key = _key(interp.version, str(interp.python), interp.origin, where, project, pins, EXTRAS)
    name = f"venv-{interp.version}-{key}"
    host_base = (interp.root / "opt") if interp.root else cache_dir()
    seen = Path("/opt") / name if interp.root else host_base / name
    host = host_base / name
    with _locked(cache_dir(), f"venv-{interp.version}"):
        if (host / ".complete").is_file():
            return seen
        for stale in host_base.glob(f"venv-{interp.version}-*"):
            shutil.rmtree(stale, ignore_errors=True)
        src = "/src" if interp.root else str(REPO)
        steps = [
            [str(interp.python), "-m", "venv", str(seen)],
            [f"{seen}/bin/python", "-m", "pip", "install", "-q", "--upgrade", "pip"],
            [f"{seen}/bin/python", "-m", "pip", "install", "-q", "-e", f"{src}[{EXTRAS}]",
             *pins],
        ]
        try:
            for argv in steps:
                _run(interp.command(argv, src), log, SETUP_TIMEOUT)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as e:
            raise SetupError(f"{interp.version}: venv set-up failed ({e}); see {log}") from None
        (host / ".complete").write_text(key + "\n")
    return seen


@dataclass
class Outcome:
    version: str
    what: str
    origin: str
    summary: str
    seconds: float
    ok: bool
    log: Path


SUMMARY = re.compile(r"^=*\s*(\d+ (passed|failed|skipped|error).*?)\s*=*$")


def run_tests(interp: Interpreter, venv: Path, what: str, log: Path) -> Outcome:
    src = "/src" if interp.root else str(REPO)
    argv = [f"{venv}/bin/python", "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
            "-o", "addopts=", f"tests/{what}"]
    started = time.monotonic()
    with open(log, "w") as out:
        try:
            done = subprocess.run(interp.command(argv, src), stdout=out, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, timeout=RUN_TIMEOUT, check=False,
                                  cwd=REPO)
            code = done.returncode
        except subprocess.TimeoutExpired:
            code = -1
    lines = log.read_text(errors="replace").splitlines()
    found = next((m.group(1) for ln in reversed(lines) if (m := SUMMARY.match(ln))), None)
    summary = found or f"no pytest summary (exit {code})"
    return Outcome(interp.version, what, interp.origin, summary, time.monotonic() - started,
                   code == 0 and found is not None, log)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog=".ci/matrix.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--versions", default=",".join(DEFAULT_VERSIONS),
                   help="comma-separated Python versions (default: %(default)s)")
    p.add_argument("--integration", default=",".join(INTEGRATION_ON),
                   help="versions that also run tests/integration (default: %(default)s)")
    p.add_argument("--debian", default="", help="versions to run in a Debian root even when "
                   "pyenv has them (3.9: bullseye, 3.13: trixie)")
    args = p.parse_args(argv)
    for option in ("versions", "integration", "debian"):
        chosen = [v for v in getattr(args, option).split(",") if v]
        unknown = [v for v in chosen if v not in VERSIONS]
        if unknown:
            p.error(f"--{option}: unsupported version(s) {', '.join(unknown)}; "
                    f"choose from {', '.join(VERSIONS)}")
        setattr(args, option, chosen)
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    logs = cache_dir() / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    outcomes: list[Outcome] = []
    started = time.monotonic()
    for version in args.versions:
        setup_log = logs / f"setup-{version}-{os.getpid()}.log"
        setup_log.write_text("")
        try:
            interp = None if version in args.debian else pyenv_interpreter(version)
            interp = interp or debian_interpreter(version, setup_log)
            venv = venv_for(interp, setup_log)
        except (SetupError, subprocess.CalledProcessError, subprocess.TimeoutExpired) as e:
            print(f"matrix: {version}: {e}", file=sys.stderr)
            return 2
        for what in ("unit", "integration"):
            if what == "integration" and version not in args.integration:
                continue
            slug = interp.origin.replace(" ", "-")
            outcome = run_tests(interp, venv, what, logs / f"{what}-{version}-{slug}.log")
            outcomes.append(outcome)
            mark = "ok" if outcome.ok else "FAILED"
            print(f"matrix: {version} ({interp.origin}) {what}: {outcome.summary} "
                  f"[{outcome.seconds:.0f} s wall] {mark}", flush=True)
            if not outcome.ok:
                print(f"matrix: log: {outcome.log}", flush=True)
    failed = [o for o in outcomes if not o.ok]
    print(f"matrix: {len(outcomes) - len(failed)}/{len(outcomes)} runs passed in "
          f"{time.monotonic() - started:.0f} s", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
