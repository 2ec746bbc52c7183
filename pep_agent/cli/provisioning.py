"""Commands for the gateway itself: provision, reprovision, verify, led (status has its own
module).

Side effects: those of the flow (services, files, FCC, HTTP, LED).
"""


import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any, Optional

import typer

from pep_agent import flow
from pep_agent.cli.app import app, debug_option, handles_errors, option, root_option, setup_logs
from pep_agent.cli.options import serial_option, server_option
from pep_agent.errors import AbortedError, ConfigError, LedError, UsageError
from pep_agent.reprovision import reprovision as run_reprovision
from pep_agent.settings.config import Settings, load_settings
from pep_agent.settings.paths import Paths
from pep_agent.system.led_signals import STATES
from pep_agent.verify import verify_connection

# The options provision and reprovision share.


def _profile() -> Any:
    return option(None, "--profile",
                  help="Platform profile: lmp, meta-pelion-edge, snap, debian [PEP_PROFILE]")


def _interface() -> Any:
    return option(None, "--interface", help="Interface FCC listens on [PEP_INTERFACE]")


def _fcc_command() -> Any:
    return option(None, "--fcc-command",
                  help="Command line replacing the profile's FCC binary [PEP_FCC_COMMAND]")


def _parsec() -> Any:
    return option(None, "--parsec/--no-parsec",
                  help="Parsec/TPM storage (default: detect the Parsec socket)")


def _no_reboot() -> Any:
    return typer.Option(False, "--no-reboot", help="Do not reboot at the end.")


def _stop_on_sigterm() -> None:
    """SIGTERM (`kill`, `timeout`, systemd) and SIGINT end the run through its cleanup (FCC).

    Both raise AbortedError, which no retry loop catches, so the run records "aborted by
    SIGTERM" and the CLI exits 128 + the signal's number. A second signal is ignored: it
    must not cut that cleanup short (SIGKILL still ends the process).
    """

    def _later(signum: int, frame: object) -> None:
        pass  # a handler, not SIG_IGN: children started by the cleanup must not inherit it

    def _abort(signum: int, frame: object) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, _later)
        raise AbortedError.by_signal(signum)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _abort)


def require_root(command: str, root: Optional[Path]) -> None:
    """Exit 3 unless this process may change the gateway: root, or a sandbox (--root DIR or
    PEP_ROOT other than /). Checked before anything is read or created under the root."""
    chosen = root or os.environ.get("PEP_ROOT") or "/"
    if os.geteuid() != 0 and not Paths(Path(chosen)).sandboxed:
        raise ConfigError(f"pep-agent {command} must run as root",
                          hint=f"run `sudo pep-agent {command} ...`, or pass --root DIR to try "
                               "it in a sandbox directory")


def _flow_context(command: str, debug: bool, **cli: Any) -> flow.Context:
    """What provision and reprovision share: root check, logs, SIGTERM cleanup, settings, the
    context."""
    require_root(command, cli.get("root"))
    setup_logs(debug)
    _stop_on_sigterm()
    return flow.build_context(settings_from(**cli))


def settings_from(**cli: Any) -> Settings:
    parsec = cli.pop("parsec", None)
    if parsec is not None:
        cli["parsec"] = "true" if parsec else "false"
    if cli.pop("no_reboot", False):
        cli["reboot"] = False
    return load_settings(cli)


@app.command()
@handles_errors
def provision(root: Optional[Path] = root_option(), profile: Optional[str] = _profile(),
              server: Optional[str] = server_option(), serial: Optional[str] = serial_option(),
              interface: Optional[str] = _interface(),
              fcc_command: Optional[str] = _fcc_command(),
              parsec: Optional[bool] = _parsec(), no_reboot: bool = _no_reboot(),
              debug: bool = debug_option()) -> None:
    """Provision this gateway: FCC + pep server → identity.json and mcc_config, then reboot."""
    ctx = _flow_context("provision", debug, root=root, profile=profile, server_url=server,
                        serial=serial, interface=interface, fcc_command=fcc_command,
                        parsec=parsec, no_reboot=no_reboot)
    outcome = flow.provision(ctx)
    record = ctx.journal.record
    if outcome == "already-provisioned":
        print(f"already provisioned (serial {record.serial}); "
              "use `pep-agent reprovision` to start over")
    else:
        print(f"provisioned serial {record.serial}: enrollment id {record.enrollment_id}")


@app.command()
@handles_errors
def reprovision(root: Optional[Path] = root_option(), profile: Optional[str] = _profile(),
                server: Optional[str] = server_option(), serial: Optional[str] = serial_option(),
                interface: Optional[str] = _interface(),
                fcc_command: Optional[str] = _fcc_command(),
                parsec: Optional[bool] = _parsec(), no_reboot: bool = _no_reboot(),
                yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask."),
                debug: bool = debug_option()) -> None:
    """Erase this gateway's identity (and Parsec state) and provision it again."""
    ctx = _flow_context("reprovision", debug, root=root, profile=profile, server_url=server,
                        serial=serial, interface=interface, fcc_command=fcc_command,
                        parsec=parsec, no_reboot=no_reboot)
    if not yes:
        if not sys.stdin.isatty():
            raise UsageError("reprovision erases this gateway's identity: pass --yes to confirm")
        if not typer.confirm("Erase this gateway's identity and provision it again?"):
            raise AbortedError("nothing changed")
    run_reprovision(ctx)
    print(f"reprovisioned serial {ctx.journal.record.serial}: "
          f"enrollment id {ctx.journal.record.enrollment_id}")


@app.command()
@handles_errors
def verify(root: Optional[Path] = root_option(), debug: bool = debug_option(),
           timeout: Optional[float] = option(
               None, "--timeout", help="Deadline in seconds [PEP_VERIFY_TIMEOUT]")) -> None:
    """After the reboot: wait for edge-core to connect with the provisioned serial."""
    require_root("verify", root)
    setup_logs(debug)
    settings = settings_from(root=root, verify_timeout=timeout)
    result = verify_connection(settings)
    print(f"verified: edge-core connected as {result.get('endpoint-name')}")


@app.command()
@handles_errors
def led(state: str = typer.Argument(..., help="off, provisioning, waiting, success, "
                                             "verified, failed, failed-<class>"),
        root: Optional[Path] = root_option(), debug: bool = debug_option()) -> None:
    """Show an LED state by hand, to test a board's LED on the line (exit 26 if it cannot)."""
    require_root("led", root)
    setup_logs(debug)
    if state not in STATES:
        raise UsageError(f"unknown LED state {state!r}", hint="one of: " + ", ".join(STATES))
    led = flow.make_led_for(settings_from(root=root))
    if not debug:
        # The problems become the error's reason below: not also one warning each.
        logging.getLogger("pep_agent.system.leds").setLevel(logging.ERROR)
    problems = led.show(state)
    if problems:
        raise LedError(f"LED state {state} not shown: " + "; ".join(dict.fromkeys(problems)))
