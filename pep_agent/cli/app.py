"""The Typer application, shared options and the error-to-exit-code wrapper. No side effects."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any, Optional, TypeVar

import typer

from pep_agent.errors import Exit, PepError

F = TypeVar("F", bound=Callable[..., Any])

# rich_markup_mode=None keeps rich out of --help; no pretty tracebacks, which would print
# local variables (and with them secrets). Completion (--install-completion,
# --show-completion) costs no measurable start-up time: typer loads its completion code only
# when one of those options is used or the shell asks for completions.
app = typer.Typer(
    name="pep-agent", no_args_is_help=True, rich_markup_mode=None,
    pretty_exceptions_enable=False,
    help="Provision an Izuma/Pelion Edge gateway with its production identity.",
)


def _print_version(value: bool) -> None:
    if value:
        from pep_agent import __version__

        print(f"pep-agent {__version__}")
        raise typer.Exit()


# Every option is written `name: T = typer.Option(DEFAULT, ...)`, the default first and
# positional: the one form that both Debian bookworm's typer 0.7 (which has no Annotated
# support and requires that default) and the newest typer accept.
@app.callback()
def _options(version: Optional[bool] = typer.Option(
        None, "--version", help="Print the version and exit.", callback=_print_version,
        is_eager=True)) -> None:
    """Provision an Izuma/Pelion Edge gateway with its production identity."""


def option(default: Any, *names: str, help: str, **kw: Any) -> Any:
    """A typer option whose [default] is not shown: the help text says it where it matters."""
    return typer.Option(default, *names, help=help, show_default=False, **kw)


def root_option() -> Any:
    return option(None, "--root",
                  help="Run inside DIR instead of / (sandbox: the host is never touched).")


def debug_option() -> Any:
    return typer.Option(False, "--debug", help="Verbose logs and tracebacks.")


def fail(err: PepError) -> None:
    """Print the one-line error and its hint to stderr."""
    if not err.logged:
        print(f"pep-agent: error: {err.message}", file=sys.stderr)
    if err.hint:
        print(f"pep-agent: hint: {err.hint}", file=sys.stderr)


def handles_errors(func: F) -> F:
    """Map PepError to its exit code; tracebacks only at debug level."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except PepError as e:
            import logging  # imported here: status and --help never log

            logging.getLogger("pep_agent").debug("error detail", exc_info=True)
            fail(e)
            raise typer.Exit(int(e.code)) from None
        except KeyboardInterrupt:
            print("pep-agent: interrupted", file=sys.stderr)
            raise typer.Exit(int(Exit.ABORTED)) from None

    return wrapper  # type: ignore[return-value]


def setup_logs(debug: bool) -> None:
    from pep_agent.system.logs import setup_logging

    setup_logging(debug=debug)


# The module registering each command. typer turns every registered command into a click
# command at start-up (evaluating all its annotations), so a run loads only the module of its
# command; --help, no command or an unknown word load them all, in this order.
COMMAND_MODULES = ("provisioning", "server", "sim")
_MODULE_OF = {
    "provision": "provisioning", "reprovision": "provisioning", "status": "provisioning",
    "verify": "provisioning", "led": "provisioning",
    "get-one-identity": "server", "get-enrollment-id": "server",
    "get-verification-key": "server", "list-enrollment-ids": "server",
    "sim": "sim",
}


def main() -> None:
    """Console-script entry point."""
    import importlib

    if sys.argv[1:] == ["--version"]:
        # Answered here, before typer: typer 0.23 (the last for Python 3.9) ends a bare
        # --version with "Missing command", and this costs no typer import on any version.
        from pep_agent import __version__

        print(f"pep-agent {__version__}")
        return

    # No option comes before the command's name, so the first plain word is the command.
    word = next((a for a in sys.argv[1:] if not a.startswith("-")), "")
    wanted = _MODULE_OF.get(word)
    for module in (wanted,) if wanted else COMMAND_MODULES:
        importlib.import_module(f"pep_agent.cli.{module}")
    # One name however started (console script, python -m): usage lines and completion.
    app(prog_name="pep-agent")
