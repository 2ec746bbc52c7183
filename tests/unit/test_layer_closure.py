"""The Yocto layer's closure check, from its committed data (no layer checkouts needed)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

LAYER = Path(__file__).resolve().parents[2] / "packaging" / "yocto"
SCRIPT = LAYER / "check-closure.py"
RECIPE = LAYER / "recipes-connectivity" / "pep-agent" / "pep-agent_git.bb"

if not SCRIPT.exists():  # the ptest installs tests/unit without the layer
    pytest.skip("the Yocto layer is not beside the tests", allow_module_level=True)


def _check(recipe: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), "check", "--recipe", str(recipe)],
                          capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.spawns
def test_the_recipe_covers_every_import_on_both_branches() -> None:
    out = _check(RECIPE)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "check-closure: kirkstone: OK" in out.stdout
    assert "check-closure: scarthgap: OK" in out.stdout


@pytest.mark.spawns
@pytest.mark.parametrize("dep, module", [("python3-fcntl", "fcntl"),
                                         ("python3-typer", "typer")])
def test_removing_one_rdepends_fails(tmp_path: Path, dep: str, module: str) -> None:
    text = RECIPE.read_text()
    line = f"    {dep} \\\n"
    assert line in text
    recipe = tmp_path / "pep-agent_git.bb"
    recipe.write_text(text.replace(line, "", 1))
    out = _check(recipe)
    assert out.returncode == 1
    assert f"MISSING pep-agent: {module} " in out.stdout
    assert "check-closure: kirkstone: FAILED" in out.stdout


@pytest.mark.spawns
def test_the_ptest_needs_what_the_tests_import(tmp_path: Path) -> None:
    text = RECIPE.read_text()
    assert " python3-hypothesis " in text
    recipe = tmp_path / "pep-agent_git.bb"
    recipe.write_text(text.replace(" python3-hypothesis ", " ", 1))
    out = _check(recipe)
    assert out.returncode == 1
    assert "MISSING pep-agent-ptest: the tests import hypothesis" in out.stdout


@pytest.mark.spawns
def test_a_package_no_release_has_fails(tmp_path: Path) -> None:
    text = RECIPE.read_text()
    recipe = tmp_path / "pep-agent_git.bb"
    # configparser is in python3-core: there is no python3-configparser.
    recipe.write_text(text.replace(' python3-pytest"', ' python3-pytest python3-configparser"', 1))
    out = _check(recipe)
    assert out.returncode == 1
    assert ("MISSING pep-agent-ptest: python3-configparser is not a package this release's"
            in out.stdout)


@pytest.mark.spawns
def test_a_missing_input_is_exit_2(tmp_path: Path) -> None:
    out = _check(tmp_path / "absent.bb")
    assert out.returncode == 2
    assert out.stderr.startswith("check-closure: cannot read") and out.stderr.count("\n") == 1
