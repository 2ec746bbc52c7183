"""`pep-agent sim ...` where the simulators or their libraries are absent: one line naming the
package to install, the configuration exit code, no traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest

# Runs the real console entry point with a module made unimportable (None in sys.modules makes
# `import` raise ModuleNotFoundError, as on an image without it).
SCRIPT = ("import sys; sys.modules[{hidden!r}] = None; sys.argv = ['pep-agent', 'sim', {cmd!r}]; "
          "from pep_agent.cli import main; main()")


@pytest.mark.spawns
@pytest.mark.parametrize(("hidden", "cmd", "named"), [
    ("cbor2", "fcc", "'cbor2'"),
    ("cbor2", "server", "'cbor2'"),
    ("pep_agent.sim", "server", "are not installed"),
])
def test_sim_without_its_modules_names_the_package(hidden: str, cmd: str, named: str) -> None:
    run = subprocess.run([sys.executable, "-c", SCRIPT.format(hidden=hidden, cmd=cmd)],
                         capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert run.returncode == 3, run.stderr
    assert "Traceback" not in run.stderr
    lines = run.stderr.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("pep-agent: error: the simulators ") and named in lines[0]
    assert "pep-agent-sim" in lines[0] and "pep-agent[sim]" in lines[0]
    assert run.stdout == ""
