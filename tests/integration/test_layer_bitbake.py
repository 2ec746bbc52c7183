"""The Yocto layer check with bitbake itself: the closure check on the RDEPENDS bitbake computes.

Runs packaging/yocto/check-layer.sh on local checkouts of poky and meta-openembedded at one
branch, named by PEP_YOCTO_POKY and PEP_YOCTO_META_OE (PEP_YOCTO_PYTHON: the interpreter for
bitbake, default the system's python3; PEP_YOCTO_BUILD: a build directory to keep, default a
new one, removed after); without them the test skips and says why. Nothing is fetched
(BB_NO_NETWORK). Each run parses every recipe of the layer set: minutes, not seconds. As root
the script runs bitbake as an unprivileged user, so the build directory is made where that
user can reach it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CHECK_LAYER = REPO / "packaging/yocto/check-layer.sh"
POKY = os.environ.get("PEP_YOCTO_POKY")
META_OE = os.environ.get("PEP_YOCTO_META_OE")
# Parses take 3 to 10 minutes each, on an idle or a loaded machine.
RUN_TIMEOUT = 1800

pytestmark = [
    pytest.mark.skipif(not (POKY and META_OE),
                       reason="set PEP_YOCTO_POKY and PEP_YOCTO_META_OE to poky and "
                              "meta-openembedded checkouts at one branch"),
    pytest.mark.timeout(2 * RUN_TIMEOUT + 300),
]

# A distribution's layer with the .bbappend a maintainer might write: the recipe's own text is
# unchanged, so only bitbake's value of RDEPENDS:pep-agent shows the two packages gone.
LAYER_CONF = """\
BBPATH .= ":${LAYERDIR}"
BBFILES += "${LAYERDIR}/recipes-*/*/*.bbappend"
BBFILE_COLLECTIONS += "site"
BBFILE_PATTERN_site = "^${LAYERDIR}/"
BBFILE_PRIORITY_site = "10"
LAYERDEPENDS_site = "pep-agent"
LAYERSERIES_COMPAT_site = "kirkstone scarthgap"
"""
REMOVE = 'RDEPENDS:${PN}:remove = "python3-fcntl python3-netclient"\n'


def _check_layer(build: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    assert POKY and META_OE
    python = os.environ.get("PEP_YOCTO_PYTHON") or shutil.which("python3", path="/usr/bin:/bin")
    assert python is not None, "no system python3: set PEP_YOCTO_PYTHON"
    return subprocess.run(["bash", str(CHECK_LAYER), "--python", python, *extra, POKY,
                           META_OE, str(build)], capture_output=True, text=True,
                          timeout=RUN_TIMEOUT, stdin=subprocess.DEVNULL, check=False)


def test_a_remove_in_a_bbappend_fails_and_the_layer_alone_passes(tmp_path: Path) -> None:
    site = tmp_path / "meta-site"
    (site / "conf").mkdir(parents=True)
    (site / "conf/layer.conf").write_text(LAYER_CONF)
    append = site / "recipes-site/pep-agent/pep-agent_%.bbappend"
    append.parent.mkdir(parents=True)
    append.write_text(REMOVE)
    # One build directory for both runs: the second parse reuses what the first cached.
    kept = os.environ.get("PEP_YOCTO_BUILD")
    build = Path(kept or tempfile.mkdtemp(prefix="pep-layer-check-", dir="/var/tmp"))
    build.chmod(0o755)
    try:
        out = _check_layer(build, "--layer", str(site))
        text = out.stdout + out.stderr
        assert out.returncode == 1, text
        assert "MISSING pep-agent: fcntl " in text
        assert "imports what python3-netclient provides" in text
        assert "RDEPENDS from bitbake's values" in text

        out = _check_layer(build)
        text = out.stdout + out.stderr
        assert out.returncode == 0, text
        assert "check-layer: OK" in text
        assert "MISSING" not in text
    finally:
        if not kept:
            shutil.rmtree(build, ignore_errors=True)
