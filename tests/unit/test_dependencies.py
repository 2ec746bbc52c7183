"""The declared dependencies against what the code imports: the agent's own list holds only
what the agent imports, and the simulators' libraries are the `sim` extra, so that a gateway
installing the agent with pip (or a package built from its metadata) gets nothing it never
loads. Reads the installed distribution's metadata and the sources' import statements."""

from __future__ import annotations

import ast
import re
import sys
from importlib import metadata
from pathlib import Path

import pytest

import pep_agent

# The package as it is imported: the checkout, or an installed copy (a Yocto ptest has no
# checkout beside its tests).
PACKAGE = Path(pep_agent.__file__).resolve().parent
SIM = PACKAGE / "sim"
# Distribution name → the module it installs, where they differ.
MODULE_OF = {"systemd-python": "systemd"}


def _declared() -> dict[str, set[str]]:
    """Module names by extra ("" for the core list), from the installed Requires-Dist."""
    found: dict[str, set[str]] = {}
    for line in metadata.requires("pep-agent") or []:
        name = re.match(r"[A-Za-z0-9._-]+", line)
        assert name is not None, line
        extra = re.search(r"""extra\s*==\s*["']([^"']+)["']""", line)
        module = MODULE_OF.get(name.group(0), name.group(0).replace("-", "_").lower())
        found.setdefault(extra.group(1) if extra else "", set()).add(module)
    return found


def _imports(files: list[Path]) -> set[str]:
    """Top-level names of the absolute imports in `files`."""
    names: set[str] = set()
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names


def _sources(inside_sim: bool) -> list[Path]:
    return [p for p in PACKAGE.rglob("*.py") if (SIM in p.parents) == inside_sim]


def test_every_core_dependency_is_imported_by_the_agent() -> None:
    core = _declared()[""]
    unused = core - _imports(_sources(inside_sim=False))
    assert not unused, f"core dependencies only the simulators (or nothing) import: {unused}"


@pytest.mark.skipif(sys.version_info < (3, 10), reason="sys.stdlib_module_names is 3.10+")
def test_the_simulators_libraries_are_the_sim_extra() -> None:
    declared = _declared()
    third_party = {name for name in _imports(_sources(inside_sim=True))
                   if name not in sys.stdlib_module_names and name != "pep_agent"}
    missing = third_party - declared[""] - declared.get("sim", set())
    assert not missing, f"imported by pep_agent/sim, in neither list: {missing}"
