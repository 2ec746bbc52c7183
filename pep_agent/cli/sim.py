"""`pep-agent sim server|fcc`: the simulators, for demos, tests and QA. Side effects: theirs."""


from pathlib import Path
from typing import Annotated, Optional

import typer

from pep_agent.cli.app import app, handles_errors

sim_app = typer.Typer(help="Simulators of the pep server and of FCC.", no_args_is_help=True,
                      rich_markup_mode=None)
app.add_typer(sim_app, name="sim")


@sim_app.command("server")
@handles_errors
def sim_server(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port (0: any free port).")] = 5151,
    db: Annotated[Optional[Path], typer.Option(help="SQLite file (default: temporary).")] = None,
    fail_next: Annotated[int, typer.Option(help="Fail the next N identity requests.")] = 0,
    fail_status: Annotated[int, typer.Option(help="HTTP status of those failures.")] = 503,
    delay: Annotated[float, typer.Option(help="Seconds before answering identity.")] = 0.0,
    drop_next: Annotated[int, typer.Option(help="Leave N identity requests unanswered.")] = 0,
    fcc_timeout: Annotated[float, typer.Option(help="Socket timeout towards FCC.")] = 30.0,
    update_auth_cert: Annotated[Optional[Path], typer.Option(
        help="Certificate (DER or PEM) sent to FCC as mbed.UpdateAuthCert.")] = None,
) -> None:
    """A pep server: the v3 API, records in SQLite, the real FCC exchange."""
    from pep_agent.errors import UsageError
    from pep_agent.sim.server import serve

    if not 0 <= port <= 65535:
        raise UsageError(f"--port {port}: use 0 to 65535 (0: any free port)")

    serve(host, port, db, fail_next=fail_next, fail_status=fail_status, delay=delay,
          drop_next=drop_next, fcc_timeout=fcc_timeout, update_auth_cert=update_auth_cert)


@sim_app.command("fcc")
@handles_errors
def sim_fcc(
    parsec: Annotated[bool, typer.Option("--parsec", help="Store in mcc_config/its|pst.")] = False,
    mcc_config: Annotated[Optional[Path], typer.Option(help="mcc_config for --parsec.")] = None,
    fault: Annotated[Optional[str], typer.Option(help="crash, silent, no-accept, fail-after, "
                                                     "hang-after, ignore-term, "
                                                     "pause-after-exchange")] = None,
    no_sync: Annotated[bool, typer.Option(
        "--no-sync", envvar="PEP_SIM_FCC_NO_SYNC",
        help="Write without O_SYNC, as an FCC build that does not sync (crash tests).")] = False,
    listen_first: Annotated[bool, typer.Option(
        "--listen-first", envvar="PEP_SIM_FCC_LISTEN_FIRST",
        help="Listen before printing the port (the real FCC prints it a moment before).")] = False,
) -> None:
    """An FCC: prints its IP and port, takes one factory exchange, exits."""
    from pep_agent.sim.fcc import run

    raise typer.Exit(run(parsec=parsec, mcc_config=mcc_config, fault=fault, sync=not no_sync,
                         listen_first=listen_first))
