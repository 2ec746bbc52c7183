"""packaging/real-fcc: the real FCC's build refuses source archives whose sums do not match,
before unpacking anything, and its cache finds nothing it did not build.

Runs the scripts as real processes on archives made here (not the real ones: a build takes a
minute; CI builds from those).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

BUILD = Path(__file__).resolve().parents[2] / "packaging/real-fcc/build.sh"
CACHED = BUILD.with_name("cached.sh")
NAMES = ("factory-configurator-client-example-4.10.0.tar.gz",
         "mbed-cloud-client-d7edc529.tar.gz", "mbedtls-2.25.0.tar.gz")

pytestmark = pytest.mark.skipif(
    not all(shutil.which(t) for t in ("cmake", "make", "gcc", "g++", "sha256sum", "tar")),
    reason="the real FCC's build needs cmake, make, gcc, g++, sha256sum and tar")


def _archives(folder: Path, sums: dict[str, str] | None = None) -> Path:
    """Three stand-in archives and a SHA256SUMS listing their own sums (or `sums`)."""
    folder.mkdir()
    lines = []
    for name in NAMES:
        (folder / name).write_bytes(f"not {name}".encode())
        digest = hashlib.sha256((folder / name).read_bytes()).hexdigest()
        lines.append(f"{(sums or {}).get(name, digest)}  {name}\n")
    (folder / "SHA256SUMS").write_text("".join(lines))
    return folder


def _run(*argv: str | Path, cwd: Path,
         env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, **(env or {})}, timeout=60, check=False)


def test_archives_other_than_the_pinned_ones_are_refused(tmp_path: Path) -> None:
    # Their SHA256SUMS agrees with them: only the sums the script pins tell them apart.
    out = _run(BUILD, "-a", _archives(tmp_path / "src"), "-o", tmp_path / "out", cwd=tmp_path)
    assert out.returncode == 2, out.stderr
    assert ("build.sh: factory-configurator-client-example-4.10.0.tar.gz: checksum mismatch: "
            in out.stderr and "build.sh pins 4fee2436" in out.stderr), out.stderr
    assert not (tmp_path / "out").exists()


def test_an_archive_that_is_not_what_sha256sums_lists_is_refused(tmp_path: Path) -> None:
    # A damaged download: checked against SHA256SUMS before the pinned sums.
    src = _archives(tmp_path / "src", {NAMES[0]: "0" * 64})
    out = _run(BUILD, "-a", src, "-o", tmp_path / "out", cwd=tmp_path)
    assert out.returncode == 2, out.stderr
    assert out.stderr.startswith(f"build.sh: {NAMES[0]}: checksum mismatch: its sha256 is ")
    assert out.stderr.strip().endswith(f"SHA256SUMS says {'0' * 64}"), out.stderr
    assert not (tmp_path / "out").exists()


def test_a_missing_archive_is_named(tmp_path: Path) -> None:
    src = _archives(tmp_path / "src")
    (src / NAMES[2]).unlink()
    (src / NAMES[0]).unlink()
    out = _run(BUILD, "-a", src, "-o", tmp_path / "out", cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr.strip() == f"build.sh: {src / NAMES[0]} is missing"


def test_the_cache_holds_nothing_until_a_build_succeeded(tmp_path: Path) -> None:
    env = {"PEP_AGENT_CACHE": str(tmp_path / "cache")}
    nothing = _run(CACHED, cwd=tmp_path, env=env)
    assert nothing.returncode == 1 and nothing.stdout == ""
    refused = _run(CACHED, "-b", _archives(tmp_path / "src"), cwd=tmp_path, env=env)
    assert refused.returncode == 2 and "checksum mismatch" in refused.stderr, refused.stderr
    assert [p.name for p in (tmp_path / "cache/real-fcc").iterdir()] == [".lock"]
    assert _run(CACHED, cwd=tmp_path, env=env).returncode == 1
