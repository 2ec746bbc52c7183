"""`pep-agent sim server|fcc`: the simulators, for demos, tests and QA. Side effects: theirs."""


import importlib
from pathlib import Path
from typing import Any, Optional

import typer

from pep_agent.cli.app import app, handles_errors
from pep_agent.errors import ConfigError, UsageError

sim_app = typer.Typer(help="Simulators of the pep server and of FCC.", no_args_is_help=True,
                      rich_markup_mode=None)
app.add_typer(sim_app, name="sim")


def _load(module: str) -> Any:
    """The simulator's module; its own dependencies are not the agent's, and a gateway image
    usually lacks them (and the simulators themselves): one line naming the package, no
    hint line, no traceback."""
    try:
        return importlib.import_module(f"pep_agent.sim.{module}")
    except ModuleNotFoundError as e:
        missing = e.name or "a module"
        what = ("are not installed here" if missing.startswith("pep_agent")
                else f"need the Python module {missing!r}, which is not installed")
        raise ConfigError(
            f"the simulators {what}: install the pep-agent-sim package (Debian, Yocto) or "
            "`pip install 'pep-agent[sim]'`", hint="") from None


@sim_app.command("server")
@handles_errors
def sim_server(
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(5151, help="Port (0: any free port)."),
    db: Optional[Path] = typer.Option(None, help="SQLite file (default: temporary)."),
    fail_next: int = typer.Option(0, help="Fail the next N identity requests."),
    fail_status: int = typer.Option(503, help="HTTP status of those failures."),
    delay: float = typer.Option(0.0, help="Seconds before answering identity."),
    drop_next: int = typer.Option(0, help="Leave N identity requests unanswered."),
    fcc_timeout: float = typer.Option(30.0, help="Socket timeout towards FCC."),
    update_auth_cert: Optional[Path] = typer.Option(
        None, help="Certificate (DER or PEM) sent to FCC as mbed.UpdateAuthCert."),
    port_file: Optional[Path] = typer.Option(
        None, help="Write HOST:PORT to this file (atomically) once listening."),
) -> None:
    """A pep server: the v3 API, records in SQLite, the real FCC exchange."""
    if not 0 <= port <= 65535:
        raise UsageError(f"--port {port}: use 0 to 65535 (0: any free port)")
    if update_auth_cert is not None:
        # A certificate FCC refuses would fail every injection: refuse it here, saying why.
        der = _load("server").read_certificate(update_auth_cert)
        reason = _load("x509").fcc_refusal(der)
        if reason is not None:
            raise UsageError(f"--update-auth-cert {update_auth_cert}: {reason}",
                             hint="give the firmware-update certificate FCC takes: DER or PEM, "
                                  "a P-256 key, not expired")

    _load("server").serve(host, port, db, fail_next=fail_next, fail_status=fail_status,
                          delay=delay, drop_next=drop_next, fcc_timeout=fcc_timeout,
                          update_auth_cert=update_auth_cert, port_file=port_file)


@sim_app.command("fcc")
@handles_errors
def sim_fcc(
    parsec: bool = typer.Option(False, "--parsec", help="Store in mcc_config/its|pst."),
    mcc_config: Optional[Path] = typer.Option(None, help="mcc_config for --parsec."),
    fault: Optional[str] = typer.Option(None, help="crash, silent, no-accept, fail-after, "
                                                   "hang-after, ignore-term, "
                                                   "pause-after-exchange"),
    no_sync: bool = typer.Option(
        False, "--no-sync", envvar="PEP_SIM_FCC_NO_SYNC",
        help="Write without O_SYNC, as an FCC build that does not sync (crash tests)."),
    port_file: Optional[Path] = typer.Option(
        None, help="Write IP:PORT to this file (atomically) once listening."),
) -> None:
    """An FCC: prints its IP and port, takes one factory exchange, exits."""
    raise typer.Exit(_load("fcc").run(parsec=parsec, mcc_config=mcc_config, fault=fault,
                                      sync=not no_sync, port_file=port_file))
