"""The command line: the only package that imports typer. Side effects: none beyond its commands.

Commands live in one module per audience (provisioning, server, sim); each turns PepErrors into
exit codes through `handles_errors`. Heavy modules are imported inside commands so that
`--help` and `status` load little more than typer and the standard library. The command
modules do not use `from __future__ import annotations`: typer would eval() each string
annotation at every start.
"""

from __future__ import annotations

from pep_agent.cli.app import app, main

__all__ = ["app", "main"]
