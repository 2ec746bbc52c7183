#!/usr/bin/env python3
"""Refresh .ci/targets.json: per target, the Python and the version of every third-party
package the agent, its tests and its simulators import, with where each figure came from.

- Yocto kirkstone and scarthgap: the recipe file names (`python3-requests_2.27.1.bb`) in git
  clones of openembedded-core and meta-openembedded (`--oe-core DIR --meta-oe DIR`, bare or
  not) at the commits below, then this project's own layer (packaging/yocto, which wins, as
  its priority makes it win in a build).
- Debian bookworm and trixie: the archive's package indexes, read with apt-get/apt-cache into
  a private state directory (the machine's own apt configuration is not touched), from the
  mirror this machine's apt already uses.

A package a target does not ship is recorded as not shipped; `.ci/matrix.py` then installs
the lowest version pyproject.toml accepts when it declares the package, and says so.

Side effects: writes .ci/targets.json (or `--output`), downloads Debian package indexes into a
temporary directory.
Exit status: 0 written, 1 a source could not be read, 2 usage.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OUTPUT = REPO / ".ci" / "targets.json"

# Every third-party distribution imported at run time or in tests, with what it needs in turn
# (installed --no-deps, as an image has them). (PyPI name, Yocto recipe, Debian package)
PACKAGES = [
    ("requests", "python3-requests", "python3-requests"),
    ("urllib3", "python3-urllib3", "python3-urllib3"),
    ("idna", "python3-idna", "python3-idna"),
    ("charset-normalizer", "python3-charset-normalizer", "python3-charset-normalizer"),
    ("chardet", "python3-chardet", "python3-chardet"),
    ("certifi", "python3-certifi", "python3-certifi"),
    ("cbor2", "python3-cbor2", "python3-cbor2"),
    ("psutil", "python3-psutil", "python3-psutil"),
    ("systemd-python", "python3-systemd", "python3-systemd"),
    ("typer", "python3-typer", "python3-typer"),
    ("click", "python3-click", "python3-click"),
    ("rich", "python3-rich", "python3-rich"),
    ("shellingham", "python3-shellingham", "python3-shellingham"),
    ("typing-extensions", "python3-typing-extensions", "python3-typing-extensions"),
    ("annotated-doc", "python3-annotated-doc", "python3-annotated-doc"),
    ("markdown-it-py", "python3-markdown-it-py", "python3-markdown-it"),
    ("mdurl", "python3-mdurl", "python3-mdurl"),
    ("pygments", "python3-pygments", "python3-pygments"),
    # the simulators' keys and certificates
    ("cryptography", "python3-cryptography", "python3-cryptography"),
    ("cffi", "python3-cffi", "python3-cffi"),
    ("pycparser", "python3-pycparser", "python3-pycparser"),
    # the tests (an image's ptest)
    ("pytest", "python3-pytest", "python3-pytest"),
    ("pluggy", "python3-pluggy", "python3-pluggy"),
    ("iniconfig", "python3-iniconfig", "python3-iniconfig"),
    ("packaging", "python3-packaging", "python3-packaging"),
    ("tomli", "python3-tomli", "python3-tomli"),
    ("exceptiongroup", "python3-exceptiongroup", "python3-exceptiongroup"),
    ("py", "python3-py", "python3-py"),
    ("attrs", "python3-attrs", "python3-attr"),
    ("pytest-timeout", "python3-pytest-timeout", "python3-pytest-timeout"),
    ("hypothesis", "python3-hypothesis", "python3-hypothesis"),
    ("sortedcontainers", "python3-sortedcontainers", "python3-sortedcontainers"),
]

# The commits the layer README was checked against (meta-openembedded); openembedded-core's
# branch head is recorded as resolved when the script runs.
YOCTO = {
    "kirkstone": {"python": "3.10", "oe-core": "kirkstone",
                  "meta-oe": "ce8539c941f6fcbecaca4d16640ac105c0595589"},
    "scarthgap": {"python": "3.12", "oe-core": "scarthgap",
                  "meta-oe": "bec755063a8b5da65df626f5749496aadaa4f4bb"},
}
DEBIAN = {"bookworm": "3.11", "trixie": "3.13"}
# Python versions of the newest-libraries run (pip's resolver, the dev extra); its unit tests
# only: `make test` runs the integration tests with the newest libraries already.
NEWEST = ("3.9", "3.13")

# Versions whose PyPI release cannot be installed as published, with the one that is the same
# code: cbor2 5.4.2's sdist builds as version 0.0.0 without setuptools_scm's git metadata;
# 5.4.2.post1 is the same release rebuilt.
PYPI_SAME_CODE = {("cbor2", "5.4.2"): "5.4.2.post1"}

RECIPE = re.compile(r"^(python3-[a-z0-9-]+)_([0-9][^/]*?)\.bb$")


class SourceError(Exception):
    """A layer or archive could not be read; the message says which."""


def _git(gitdir: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(gitdir), *args], capture_output=True, text=True,
                          timeout=120, check=False)
    if done.returncode != 0:
        raise SourceError(f"git {' '.join(args)} in {gitdir}: {done.stderr.strip()}")
    return done.stdout


def _recipes_in_git(gitdir: Path, ref: str, where: str, label: str) -> dict[str, tuple[str, str]]:
    """recipe name -> (version, source) for every python3-* recipe below `where` at `ref`."""
    commit = _git(gitdir, "rev-parse", f"{ref}^{{commit}}").strip()
    found: dict[str, tuple[str, str]] = {}
    for path in _git(gitdir, "ls-tree", "-r", "--name-only", commit, where).splitlines():
        m = RECIPE.match(path.rsplit("/", 1)[-1])
        if m:
            found[m.group(1)] = (m.group(2), f"{label}@{commit[:12]} {path}")
    return found


def _own_layer(branch: str) -> dict[str, tuple[str, str]]:
    layer = REPO / "packaging" / "yocto"
    found: dict[str, tuple[str, str]] = {}
    for sub in ("recipes-devtools", f"branch-{branch}"):  # the branch's own ones parse last
        for path in sorted((layer / sub).rglob("python3-*.bb")):
            m = RECIPE.match(path.name)
            if m:
                found[m.group(1)] = (m.group(2), f"this layer {path.relative_to(REPO)}")
    return found


def yocto_target(branch: str, oe_core: Path, meta_oe: Path) -> dict[str, object]:
    spec = YOCTO[branch]
    recipes = _recipes_in_git(oe_core, spec["oe-core"], "meta/recipes-devtools/python",
                              "openembedded-core")
    recipes.update(_recipes_in_git(meta_oe, spec["meta-oe"], "meta-python",
                                   "meta-openembedded"))
    recipes.update(_own_layer(branch))
    return {"python": spec["python"], "kind": "yocto",
            "packages": {pypi: _entry(pypi, recipes.get(recipe)) for pypi, recipe, _ in PACKAGES}}


def _entry(pypi: str, found: tuple[str, str] | None) -> dict[str, str | None]:
    if found is None:
        return {"version": None, "from": "not shipped"}
    version, source = found
    entry: dict[str, str | None] = {"version": version, "from": source}
    if (pypi, version) in PYPI_SAME_CODE:
        entry["pypi"] = PYPI_SAME_CODE[(pypi, version)]
    return entry


def _apt_mirror() -> str:
    """The Debian mirror URI this machine's apt uses for its own suite."""
    for path in [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]:
        text = path.read_text(errors="replace") if path.is_file() else ""
        for line in text.splitlines():
            words = line.split()
            if path.suffix == ".sources" and line.startswith("URIs:") and len(words) > 1:
                if not words[1].rstrip("/").endswith("-security"):
                    return words[1]
            elif words[:1] == ["deb"] and "-security" not in line:
                uris = [w for w in words[1:] if "://" in w]
                if uris:
                    return uris[0]
    raise SourceError("no Debian mirror in this machine's apt sources")


def _upstream(version: str) -> str:
    """'1:2.28.1+dfsg-1' -> '2.28.1': no epoch, Debian revision or repack suffix."""
    version = version.split(":", 1)[-1].rsplit("-", 1)[0]
    return re.split(r"[+~]", version)[0]


def debian_target(suite: str, mirror: str, work: Path) -> dict[str, object]:
    state = work / suite
    for sub in ("lists/partial", "cache/archives/partial"):
        (state / sub).mkdir(parents=True, exist_ok=True)
    (state / "sources.list").write_text(
        f"deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] {mirror} {suite} main\n"
        f"deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] {mirror} "
        f"{suite}-updates main\n")
    options = ["-o", f"Dir::State={state}", "-o", f"Dir::State::Lists={state}/lists",
               "-o", f"Dir::Cache={state}/cache",
               "-o", f"Dir::Etc::SourceList={state}/sources.list",
               "-o", "Dir::Etc::SourceParts=/nonexistent", "-o", "APT::Architecture=amd64"]
    done = subprocess.run(["apt-get", *options, "-q", "update"], capture_output=True, text=True,
                          timeout=600, check=False)
    if done.returncode != 0:
        raise SourceError(f"apt-get update for {suite}: {done.stderr.strip()[-300:]}")
    packages: dict[str, dict[str, str | None]] = {}
    for pypi, _, deb in PACKAGES:
        shown = subprocess.run(["apt-cache", *options, "policy", deb], capture_output=True,
                               text=True, timeout=120, check=False).stdout
        m = re.search(r"Candidate:\s*(\S+)", shown)
        if not m or m.group(1) == "(none)":
            packages[pypi] = {"version": None, "from": "not shipped"}
            continue
        entry = _entry(pypi, (_upstream(m.group(1)), f"Debian {suite} {deb} {m.group(1)}"))
        packages[pypi] = entry
    return {"python": DEBIAN[suite], "kind": "debian", "packages": packages}


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog=".ci/refresh-targets.py",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--oe-core", type=Path, required=True, help="git clone of openembedded-core")
    p.add_argument("--meta-oe", type=Path, required=True,
                   help="git clone of meta-openembedded")
    p.add_argument("--output", type=Path, default=OUTPUT)
    args = p.parse_args(argv)
    targets: dict[str, object] = {}
    try:
        for branch in YOCTO:
            targets[branch] = yocto_target(branch, args.oe_core, args.meta_oe)
        mirror = _apt_mirror()
        with tempfile.TemporaryDirectory(prefix="pep-targets-") as work:
            for suite in DEBIAN:
                targets[suite] = debian_target(suite, mirror, Path(work))
    except (SourceError, OSError, subprocess.TimeoutExpired) as e:
        print(f"refresh-targets: {e}", file=sys.stderr)
        return 1
    for target in targets.values():
        assert isinstance(target, dict)
        # Every target runs the integration tests too: an image's libraries are what the
        # agent meets on the gateway, and each release's differ (urllib3 1.26 and 2.x, typer).
        target["tests"] = ["unit", "integration"]
    doc = {
        "about": "Written by .ci/refresh-targets.py; do not edit by hand. Read by .ci/matrix.py.",
        "newest": {"pythons": list(NEWEST), "tests": ["unit"]},
        "targets": targets,
    }
    args.output.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"refresh-targets: wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
