"""The Typer application, shared options and the error-to-exit-code wrapper.

Side effects: none, except that a configuration error of `provision` or `reprovision` is
recorded in the journal (pep_agent/failures.py) and a bug's traceback is logged.
"""

from __future__ import annotations

import functools
import importlib
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional, TypeVar

import typer

from pep_agent import __version__
from pep_agent.errors import AbortedError, PepError, Reported
from pep_agent.exit_codes import TABLE, Exit
from pep_agent.settings.paths import Paths

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


def fail(err: Reported) -> None:
    """Print the one-line error and its hint to stderr."""
    # Flushed: they are the last lines, after log lines that were flushed one by one, and a
    # test runner's captured stderr (click 8.2.0's) is read without a flush of its own.
    if not err.logged:
        print(f"pep-agent: error: {err.message}", file=sys.stderr, flush=True)
    if err.hint:
        print(f"pep-agent: hint: {err.hint}", file=sys.stderr, flush=True)


# The commands whose runs the journal records: a configuration error of theirs is recorded
# there too (pep_agent/failures.py), so that `status` reports it.
RUNS = ("provision", "reprovision")
_RECORDED = (Exit.CONFIG, Exit.SERIAL)


def handles_errors(func: F) -> F:
    """Map errors to their exit codes: one line and a hint; a bug's traceback at ERROR."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return _flushed(func, *args, **kwargs)
        except BrokenPipeError as e:
            if _stdout_gone():
                _closed_pipe()
            raise _bug(func, e) from None  # a socket's, not the output's
        except PepError as e:
            # A runner that turned a bug into this error has logged its traceback already.
            _logger().debug("error detail", exc_info=True)
            if func.__name__ in RUNS and e.code in _RECORDED and not e.logged:
                _record(kwargs.get("root"), e)
            fail(e)
            raise typer.Exit(int(e.code)) from None
        except AbortedError as e:
            fail(e)
            raise typer.Exit(int(e.code)) from None
        except KeyboardInterrupt:
            fail(AbortedError.by_signal(2))  # SIGINT
            raise typer.Exit(int(Exit.SIGINT)) from None
        except (typer.Exit, typer.Abort):
            raise  # typer's own endings: exit codes already
        except Exception as e:
            raise _bug(func, e) from None

    return wrapper  # type: ignore[return-value]


def _bug(func: Callable[..., Any], e: Exception) -> typer.Exit:
    """A bug: loud, and the operator's stderr still ends with one line and a hint."""
    _log_bug("internal error in %s: %s", func.__name__.replace("_", "-"), type(e).__name__,
             exc_info=(type(e), e, e.__traceback__))
    print(f"pep-agent: hint: {TABLE[Exit.INTERNAL].hint}", file=sys.stderr)
    return typer.Exit(int(Exit.INTERNAL))


def _flushed(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """`func`'s result with its output flushed, so that a closed pipe shows here and not at
    the interpreter's exit (where Python prints "Exception ignored" and exits 120)."""
    try:
        result = func(*args, **kwargs)
    except typer.Exit:
        sys.stdout.flush()
        raise
    sys.stdout.flush()
    return result


def _stdout_gone() -> bool:
    """True when the reader of standard output went away (its pipe or socket has no peer)."""
    import select

    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))
    except (OSError, ValueError):
        return False


def _closed_pipe() -> None:
    """End as a Unix filter does when its reader went away (`pep-agent status | head -1`):
    quietly, with the code SIGPIPE gives. What is left in the output buffer goes nowhere."""
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    raise typer.Exit(int(Exit.SIGPIPE))


def _logger() -> Any:
    """The agent's logger, imported only when an error needs it: a successful `status` or
    `--help` never loads logging."""
    import logging

    return logging.getLogger("pep_agent")


def _log_bug(*args: Any, exc_info: Any) -> None:
    """A traceback at ERROR, through the root handler's redacting filter: set up here when
    the command had not (Python's last-resort handler would print it unredacted)."""
    import logging

    if not logging.getLogger().handlers:
        setup_logs(False)
    _logger().error(*args, exc_info=exc_info)


def state_paths(root: Optional[Path]) -> Paths:
    """Where the journal is, from the root only (--root, else PEP_ROOT, else /): not the
    settings, nor the env file, which lives under the root and so never sets it. Status reads
    there, and a configuration error is recorded there."""
    chosen = root or os.environ.get("PEP_ROOT")
    return Paths(Path(chosen) if chosen else Path("/"),
                 state_setting=os.environ.get("PEP_STATE_DIR") or None)


def _record(root: Any, err: PepError) -> None:
    """Record a configuration error of a run when the root and the state directory allow."""
    if root is not None and (not isinstance(root, Path) or not root.is_dir()):
        return  # a bad --root: no place to record it
    try:
        paths = state_paths(root)
    except (OSError, ValueError):
        return
    if "\x00" in str(paths.root) or not paths.root.is_dir():
        return
    from pep_agent.failures import record_failure

    record_failure(paths, err)


def setup_logs(debug: bool) -> None:
    from pep_agent.system.logs import setup_logging

    setup_logging(debug=debug)


# Each command: the module that registers it, and the first paragraph of its help (what the
# command list of --help shows). typer turns every registered command into a click command at
# start-up, evaluating all its annotations, so a run loads only the module of its command, and
# that module imports what the command needs at its top. The command list (--help, no
# command, an unknown word) loads none of them: it lists these lines, which a unit test keeps
# equal to the commands' own (tests/unit/test_cli_commands.py).
COMMANDS = {
    "provision": ("provisioning", "Provision this gateway: FCC + pep server → identity.json "
                                  "and mcc_config, then reboot."),
    "reprovision": ("provisioning", "Erase this gateway's identity (and Parsec state) and "
                                    "provision it again."),
    "status": ("status", "Where provisioning is: exit 0 done, 30 failed, 31 running, 32 not "
                         "started, 33 retrying, 34 deferred (an installed identity the server "
                         "could not confirm yet)."),
    "verify": ("provisioning", "After the reboot: wait for edge-core to connect with the "
                               "provisioned serial."),
    "led": ("provisioning", "Show an LED state by hand, to test a board's LED on the line "
                            "(exit 26 if it cannot)."),
    "get-one-identity": ("server", "Ask the server to inject a running FCC and save the "
                                   "identity (the manual step)."),
    "get-enrollment-id": ("server", "Print the enrollment id of a provisioned gateway, "
                                    "alone, for $(...)."),
    "get-verification-key": ("server", "Print the journald FSS verification key of a "
                                       "gateway, alone, for $(...)."),
    "list-enrollment-ids": ("server", "Save the enrollment ids as NAME.json (and NAME.csv for "
                                      "the Portal's bulk upload)."),
    "sim": ("sim", "Simulators of the pep server and of FCC."),
}
# Shell completion asks about any command's options: it gets the real commands.
_COMPLETING = "_PEP_AGENT_COMPLETE"


def _listed_only() -> None:
    raise AssertionError("a command of the list ran instead of its module's")  # unreachable


def list_commands() -> None:
    """Register each command by its name and help line only, for the command list."""
    for name, (_, summary) in COMMANDS.items():
        app.command(name, help=summary)(_listed_only)


def load_commands(word: str) -> None:
    """Register the command named `word`, or, for completion, all of them; else the list."""
    if word in COMMANDS:
        importlib.import_module(f"pep_agent.cli.{COMMANDS[word][0]}")
    elif os.environ.get(_COMPLETING):
        for module, _ in dict.fromkeys(COMMANDS.values()):
            importlib.import_module(f"pep_agent.cli.{module}")
    else:
        list_commands()


def main() -> None:
    """Console-script entry point."""
    if sys.argv[1:] == ["--version"]:
        # Answered here, before typer: typer 0.23 (the last for Python 3.9) ends a bare
        # --version with "Missing command", and this costs no typer import on any version.
        print(f"pep-agent {__version__}")
        return

    # No option comes before the command's name, so the first plain word is the command.
    load_commands(next((a for a in sys.argv[1:] if not a.startswith("-")), ""))
    # One name however started (console script, python -m): usage lines and completion.
    app(prog_name="pep-agent")
