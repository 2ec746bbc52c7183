"""Debian roots for the .deb scenarios, and the packages installed into them with apt.

Side effects: runs debootstrap (as root) into the image cache (PEP_E2E_CACHE), one root per
suite, rebuilt when its key changes; `make deb` in a fresh root of each suite (.ci/deb-in-root);
apt-get in a chroot of a gateway's overlay (never of the cached root).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

from e2e_image import (
    BASE_PACKAGES,
    DEBOOTSTRAP_TIMEOUT,
    MIRROR,
    _locked,
    _prepare,
    _remove_tree,
    _run,
    _unmount_below,
    cache_dir,
)

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]

# The base of every test gateway and what the .deb's Depends pull in (pep-agent: requests,
# urllib3, psutil, systemd, typer; pep-agent-sim: cbor2, cryptography), all from the suite
# itself, preinstalled so that installing the .deb in a test resolves from the root's package
# lists without a download.
PACKAGES = (
    *BASE_PACKAGES,
    "python3-urllib3",
    "python3-typer",
    "python3-cbor2",
    "python3-cryptography",
    # debootstrap does not resolve virtual packages: python3-cryptography's cffi API one.
    "python3-cffi-backend",
)
# Bump when the preparation changes in a way PACKAGES does not show.
LAYOUT = "1"
APT_TIMEOUT = 600
# A build installs its dependencies first (and the first one debootstraps its root).
BUILD_TIMEOUT = 2400


def _key(suite: str) -> str:
    recipe = json.dumps({"suite": suite, "mirror": MIRROR, "packages": PACKAGES,
                         "layout": LAYOUT}, sort_keys=True)
    return hashlib.sha256(recipe.encode()).hexdigest()[:16]


def cached_suite_root(suite: str, log: Path) -> Path:
    """The cached root of `suite` (bookworm, trixie), debootstrapped first when absent."""
    base = cache_dir()
    root = base / f"deb-{suite}-{_key(suite)}"
    # A lock of its own: building this root must not hold up the other scenarios' root.
    with _locked(base / f"deb-lock-{suite}"):
        if (root / ".pep-e2e-complete").is_file():
            return root
        for stale in (*base.glob(f"deb-{suite}-*"), *base.glob(f"debbuild-{suite}-*")):
            _remove_tree(stale)
        build = base / f"debbuild-{suite}-{os.getpid()}"
        with open(log, "a") as out:
            argv = ["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}",
                    suite, str(build), MIRROR]
            try:
                _run(argv, out, DEBOOTSTRAP_TIMEOUT)
            finally:
                _unmount_below(build)
            _prepare(build, out)
        (build / ".pep-e2e-complete").write_text(_key(suite) + "\n")
        build.rename(root)
    return root


def build_debs(suite: str, out_dir: Path) -> list[Path]:
    """pep-agent and pep-agent-sim from the working tree, as `make deb` builds them on a fresh
    machine of `suite` (see .ci/deb-in-root): each release's debhelper lays out its own."""
    built = subprocess.run([str(REPO / ".ci/deb-in-root"), suite, str(out_dir)], check=False,
                           timeout=BUILD_TIMEOUT, stdin=subprocess.DEVNULL, capture_output=True,
                           text=True)
    if built.returncode != 0:
        raise RuntimeError(f"make deb in a fresh {suite} root failed:\n"
                           f"{(built.stdout + built.stderr)[-3000:]}")
    print(built.stdout.strip())
    debs = sorted(out_dir.glob("pep-agent*_all.deb"))
    if len(debs) != 2:
        raise RuntimeError(f"expected pep-agent and pep-agent-sim in {out_dir}, got {debs}")
    return debs


def apt_install(root: Path, debs: list[Path]) -> subprocess.CompletedProcess[str]:
    """`apt-get install /tmp/pkg.deb ...` inside `root`. The cached root preinstalls every
    dependency, so apt downloads nothing (its --no-download would refuse the local files:
    apt 2.6 calls their path "not absolute"). The caller checks the result."""
    names = []
    for deb in debs:
        shutil.copy2(deb, root / "tmp" / deb.name)
        names.append(f"/tmp/{deb.name}")
    try:
        return subprocess.run(
            ["chroot", str(root), "apt-get", "install", "-y", "--no-install-recommends",
             *names],
            check=False, timeout=APT_TIMEOUT, capture_output=True, text=True,
            stdin=subprocess.DEVNULL,
            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8",
                 "DEBIAN_FRONTEND": "noninteractive"})
    finally:
        for deb in debs:
            (root / "tmp" / deb.name).unlink(missing_ok=True)


def chroot_run(root: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["chroot", str(root), *argv], timeout=120, capture_output=True,
                          text=True, stdin=subprocess.DEVNULL,
                          env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"})
