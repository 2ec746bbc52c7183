"""The virtual gateway's Debian root: built once with debootstrap, cached outside the clone.

Side effects: runs debootstrap (as root) and `pip download` on the host; writes below the
cache directory (PEP_E2E_CACHE, default /var/tmp/pep-agent-e2e); removes roots cached under
an older key. The cache key covers everything that shapes the root (suite, packages, wheels,
preparation steps), so changing any of them rebuilds it on the next run.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"

# What every test gateway's root holds: systemd to boot, and the agent's Debian-packaged
# libraries that every install of it uses (the .deb roots of e2e_deb add their own).
BASE_PACKAGES = (
    "systemd",
    "systemd-sysv",
    "dbus",
    "iproute2",
    "python3",
    "python3-requests",
    "python3-psutil",
    "python3-systemd",
)
# The root of the gateways that get the agent's wheel: the base, with typer from the wheels
# below rather than Debian's python3-typer (0.7 on bookworm, which the agent accepts too and
# the .deb gateways test): the newest typer the agent accepts, as pip resolves it. typer 0.28
# vendors click, so python3-click is not needed; it imports rich and shellingham.
PACKAGES = (
    *BASE_PACKAGES,
    # What `pep-agent sim fcc` (the gateways' FCC) imports: it checks credentials as the real
    # FCC does.
    "python3-cbor2",
    "python3-cryptography",
    # debootstrap does not resolve virtual packages: python3-cryptography's cffi API one.
    "python3-cffi-backend",
    "python3-rich",
    "python3-shellingham",
    "python3-typing-extensions",
    # For the gateway that installs the agent with pip (into /usr/local).
    "python3-pip",
)
WHEELS = ("typer>=0.9,<0.29", "annotated-doc")

# Units a test gateway does not need; masking them keeps boots short and quiet.
MASKED_UNITS = (
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "dpkg-db-backup.timer",
    "e2scrub_all.timer",
    "e2scrub_reap.service",
    "console-getty.service",
    "systemd-timesyncd.service",
)

# Bump when the preparation below changes in a way the lists above do not show.
LAYOUT = "3"

DEBOOTSTRAP_TIMEOUT = 1500
PIP_TIMEOUT = 300


def cache_dir() -> Path:
    return Path(os.environ.get("PEP_E2E_CACHE", "/var/tmp/pep-agent-e2e"))


def cache_key() -> str:
    recipe = json.dumps(
        {"suite": SUITE, "mirror": MIRROR, "packages": PACKAGES, "wheels": WHEELS,
         "masked": MASKED_UNITS, "layout": LAYOUT},
        sort_keys=True,
    )
    return hashlib.sha256(recipe.encode()).hexdigest()[:16]


@contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """Serialise builders: two e2e runs on one machine share the cache."""
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / "lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def cached_root(log: Path) -> Path:
    """The cached root for the current key, built first when absent (log: build output)."""
    base = cache_dir()
    root = base / f"root-{cache_key()}"
    with _locked(base):
        if (root / ".pep-e2e-complete").is_file():
            return root
        for stale in base.glob("root-*"):
            _remove_tree(stale)
        for stale in base.glob("build-*"):
            _remove_tree(stale)
        build = base / f"build-{cache_key()}-{os.getpid()}"
        with open(log, "a") as out:
            _debootstrap(build, out)
            _add_wheels(build, base / "wheels", out)
            _prepare(build, out)
        (build / ".pep-e2e-complete").write_text(cache_key() + "\n")
        build.rename(root)
    return root


def runs_dir() -> Path:
    """Where testbeds keep their overlays; leftovers of runs that died are removed."""
    runs = cache_dir() / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    for run in runs.iterdir():
        owner = run.name.split("-")[0]
        if owner.isdigit() and not Path(f"/proc/{owner}").exists():
            remove_run(run)
    return runs


def remove_run(run: Path) -> None:
    """Remove a testbed's directory, unmounting anything left mounted below it first."""
    _remove_tree(run)


def python_site(root: Path) -> Path:
    """The site directory of the root's python3 that Debian keeps for local installs."""
    versions = sorted(p.name for p in (root / "usr/lib").glob("python3.*") if p.is_dir())
    if not versions:
        raise RuntimeError(f"no python3 in {root}")
    return root / "usr/local/lib" / versions[-1] / "dist-packages"


def unpack_wheel(wheel: Path, site: Path) -> None:
    """Install a pure-Python wheel the way pip does for the files that matter here."""
    site.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)


def _run(argv: list[str], out: IO[str], timeout: float) -> None:
    print("$", " ".join(argv), file=out, flush=True)
    subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, check=True, timeout=timeout,
                   stdin=subprocess.DEVNULL)


def _debootstrap(target: Path, out: IO[str]) -> None:
    argv = ["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}",
            SUITE, str(target), MIRROR]
    try:
        _run(argv, out, DEBOOTSTRAP_TIMEOUT)
    finally:
        # debootstrap mounts proc and sys in the target; never leave them behind.
        _unmount_below(target)


def _add_wheels(root: Path, wheel_dir: Path, out: IO[str]) -> None:
    site = python_site(root)
    version = site.parent.name.removeprefix("python")
    shutil.rmtree(wheel_dir, ignore_errors=True)
    wheel_dir.mkdir(parents=True)
    _run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
          "--python-version", version, "-d", str(wheel_dir), *WHEELS], out, PIP_TIMEOUT)
    for wheel in sorted(wheel_dir.glob("*.whl")):
        unpack_wheel(wheel, site)


def _prepare(root: Path, out: IO[str]) -> None:
    _run(["systemctl", f"--root={root}", "mask", *MASKED_UNITS], out, 60)
    # A persistent journal: the tests read the previous boot's lines after a reboot.
    (root / "var/log/journal").mkdir(parents=True, exist_ok=True)
    (root / "etc/machine-id").write_text("")


def _mounts_below(path: Path) -> list[str]:
    prefix = str(path.resolve()) + "/"
    with open("/proc/mounts") as mounts:
        points = [line.split()[1] for line in mounts]
    return sorted((p for p in points if p.startswith(prefix)), key=len, reverse=True)


def _unmount_below(path: Path) -> None:
    for point in _mounts_below(path):
        subprocess.run(["umount", "-l", point], check=False, timeout=60)


def _remove_tree(path: Path) -> None:
    _unmount_below(path)
    subprocess.run(["rm", "-rf", "--one-file-system", str(path)], check=False, timeout=600)
