"""The command map of the command line (pep_agent/cli/app.py): each command is registered by
the module the map names, and the command list that --help prints from the map alone is the
one the real commands give."""

from __future__ import annotations

import importlib
import inspect
import subprocess
import sys

import pytest

# The module: the package `pep_agent.cli` exports its Typer object under the same name.
cli = importlib.import_module("pep_agent.cli.app")


def _first_paragraph(text: str) -> str:
    return " ".join(inspect.cleandoc(text).split("\n\n")[0].split())


def _registered() -> dict[str, tuple[str, str]]:
    """What the command modules register: name -> (module, first paragraph of its help)."""
    for module in dict.fromkeys(module for module, _ in cli.COMMANDS.values()):
        importlib.import_module(f"pep_agent.cli.{module}")
    found = {}
    for command in cli.app.registered_commands:
        if command.callback is cli._listed_only:
            continue  # the list's stand-ins, should another test have registered them
        assert command.callback is not None
        name = command.name or command.callback.__name__.replace("_", "-")
        found[name] = (command.callback.__module__.rpartition(".")[2],
                               _first_paragraph(command.help or command.callback.__doc__ or ""))
    for group in cli.app.registered_groups:
        typer_app = group.typer_instance
        assert group.name and typer_app is not None
        module = next(c.callback for c in typer_app.registered_commands).__module__
        found[group.name] = (module.rpartition(".")[2], _first_paragraph(str(typer_app.info.help)))
    return found


def test_the_map_names_every_command_its_module_and_its_help() -> None:
    assert _registered() == {name: (module, " ".join(summary.split()))
                             for name, (module, summary) in cli.COMMANDS.items()}


def _help(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=False, env={"COLUMNS": "100", "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    return out.stdout


@pytest.mark.spawns
def test_the_command_list_is_the_real_commands_list() -> None:
    listed = _help("import sys; sys.argv = ['pep-agent', '--help']\n"
                   "from pep_agent.cli import main; main()")
    modules = ", ".join(f"pep_agent.cli.{m}" for m in dict.fromkeys(
        module for module, _ in cli.COMMANDS.values()))
    real = _help(f"import {modules}\nfrom pep_agent.cli.app import app\n"
                 "app(prog_name='pep-agent', args=['--help'])")
    assert "get-enrollment-id" in listed and "status" in listed
    # The same lines; the list keeps the map's order, the real one the modules' import order.
    assert sorted(listed.splitlines()) == sorted(real.splitlines())
