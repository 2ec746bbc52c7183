"""The command line: the only package that imports typer. Side effects: none beyond its commands.

Commands live in one module per audience (provisioning, status, server, sim); each turns
PepErrors into exit codes through `handles_errors`. The command map (app.py's COMMANDS) loads
only the module of the command run, and the command list (--help) none, so that each module
imports what its commands need at its top and `--help` and `status` still load little more
than typer and the standard library. The command modules do not use `from __future__ import
annotations`: typer would eval() each string annotation at every start.
"""

from __future__ import annotations

from pep_agent.cli.app import app, main

__all__ = ["app", "main"]
