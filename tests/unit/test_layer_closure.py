"""The Yocto layer's closure check, from its committed data (no layer checkouts needed)."""

from __future__ import annotations

import re
import shutil
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


@pytest.mark.spawns
def test_a_remove_in_the_recipe_fails(tmp_path: Path) -> None:
    recipe = tmp_path / "pep-agent_git.bb"
    recipe.write_text(RECIPE.read_text()
                      + '\nRDEPENDS:${PN}:remove = "python3-fcntl python3-netclient"\n')
    out = _check(recipe)
    assert out.returncode == 1
    assert "MISSING pep-agent: fcntl " in out.stdout
    assert "imports what python3-netclient provides" in out.stdout


def _emit(values: dict[str, str]) -> str:
    """Variables as `bitbake -e` writes them: history comments, then VAR="value" with its
    newlines as ' \\' line ends and " and $ escaped (bb.data.emit_var)."""
    out = ['# $RDEPENDS:pep-agent [3 operations]', '#   set /layer/pep-agent_git.bb:86',
           'PN="pep-agent"']
    for name, value in values.items():
        text = value.replace('"', '\\"').replace("\n", " \\\n").replace("$", "\\$")
        out.append(f'{name}="{text}"')
    return "\n".join(out) + "\n"


def _computed(drop: tuple[str, ...] = ()) -> dict[str, str]:
    """The packages' RDEPENDS as bitbake gives them for the layer's recipe, less `drop`
    (what an RDEPENDS:${PN}:remove in a .bbappend does), one per line, with the entries
    classes add (systemd's, a versioned one) among them."""
    from importlib.util import module_from_spec, spec_from_file_location

    spec = spec_from_file_location("check_closure", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = module_from_spec(spec)
    spec.loader.exec_module(module)
    text = RECIPE.read_text()
    values = {}
    for pkg in ("pep-agent", "pep-agent-sim", "pep-agent-ptest"):
        deps = [d for d in module.rdepends_of(text, "${PN}" + pkg[len("pep-agent"):])
                if d not in drop]
        values[f"RDEPENDS:{pkg}"] = "\n".join([*deps, "systemd (>= 1:250)"])
    values["RDEPENDS:python3-typer"] = " ".join(module.rdepends_of(
        (LAYER / "recipes-devtools/python/python3-typer_0.9.4.bb").read_text()))
    values["RDEPENDS:pep-agent-dev"] = "pep-agent (= 0.1.0-r0)"
    return values


def _check_env(tmp_path: Path, values: dict[str, str],
               branch: str = "kirkstone") -> subprocess.CompletedProcess[str]:
    env = tmp_path / "bitbake-e-pep-agent"
    env.write_text(_emit(values))
    return subprocess.run([sys.executable, str(SCRIPT), "check", branch, "--bitbake-env",
                           str(env)], capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.spawns
@pytest.mark.parametrize("branch", ["kirkstone", "scarthgap"])
def test_bitbakes_values_of_the_recipe_pass(tmp_path: Path, branch: str) -> None:
    out = _check_env(tmp_path, _computed(), branch)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"check-closure: {branch}: OK" in out.stdout
    assert "RDEPENDS from bitbake's values" in out.stdout


@pytest.mark.spawns
def test_bitbakes_values_after_a_remove_fail(tmp_path: Path) -> None:
    # The recipe's text still lists both: only bitbake's value shows them gone.
    out = _check_env(tmp_path, _computed(drop=("python3-fcntl", "python3-netclient")))
    assert out.returncode == 1
    assert "MISSING pep-agent: fcntl " in out.stdout
    assert "imports what python3-netclient provides" in out.stdout
    assert "check-closure: kirkstone: FAILED" in out.stdout


@pytest.mark.spawns
def test_bitbakes_values_for_typer_count(tmp_path: Path) -> None:
    values = _computed()
    values["RDEPENDS:python3-typer"] = values["RDEPENDS:python3-typer"].replace(
        "python3-click", "")
    out = _check_env(tmp_path, values)
    assert out.returncode == 1
    assert "MISSING python3-typer: click" in out.stdout


@pytest.mark.spawns
def test_bitbake_output_without_the_recipe_is_exit_2(tmp_path: Path) -> None:
    out = _check_env(tmp_path, {"RDEPENDS:python3-typer": "python3-click"})
    assert out.returncode == 2
    assert out.stderr.startswith("check-closure: no RDEPENDS:pep-agent in ")


@pytest.mark.spawns
def test_the_released_layer_pins_its_revision() -> None:
    text = RECIPE.read_text()
    assert "AUTOREV" not in text
    pins = re.findall(r'^SRCREV\s*=\s*"([^"]*)"', text, re.M)
    assert len(pins) == 1 and re.fullmatch(r"[0-9a-f]{40}", pins[0]), pins
    repo = LAYER.parents[1]
    if shutil.which("git") is None or not (repo / ".git").exists():
        pytest.skip("not a git checkout: the pin's commit cannot be looked up")
    found = subprocess.run(["git", "-C", str(repo), "cat-file", "-e", pins[0] + "^{commit}"],
                           capture_output=True, timeout=60, check=False)
    assert found.returncode == 0, f"SRCREV {pins[0]} is not a commit of this repository"


def test_the_readme_states_pyprojects_typer_range() -> None:
    project = (LAYER.parents[1] / "pyproject.toml").read_text()
    declared = re.findall(r'^\s*"(typer[<>=!~][^";]*)"', project, re.M)
    assert len(declared) == 1, declared
    readme = (LAYER / "README.md").read_text()
    stated = re.findall(r"`(typer[<>=!~][^`]*)`", readme)
    assert stated == declared
