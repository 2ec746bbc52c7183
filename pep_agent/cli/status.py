"""`pep-agent status`: where provisioning is, from the journal. Its own module, so that it
loads none of the other commands' imports: scripts and units poll it.

Side effects: none; it only reads, and on a provisioned gateway asks edge-core's status.
"""


import json
import time
from pathlib import Path
from typing import Optional

import typer

from pep_agent import report
from pep_agent.cli.app import app, handles_errors, root_option, state_paths
from pep_agent.errors import PepError


@app.command()
@handles_errors
def status(root: Optional[Path] = root_option(),
           as_json: bool = typer.Option(False, "--json", help="Machine-readable."),
           wait: bool = typer.Option(False, "--wait", help="Block until the run ends."),
           timeout: float = typer.Option(3600.0, help="Longest --wait, seconds."),
           ) -> None:
    """Where provisioning is: exit 0 done, 30 failed, 31 running, 32 not started, 33 retrying,
    34 deferred (an installed identity the server could not confirm yet)."""
    paths = state_paths(root)
    deadline = time.monotonic() + timeout
    doc = report.status_document(paths)
    # Like `cloud-init status --wait`: a run that has not started yet is waited for too, and
    # so is a failed one that the unit runs again.
    while (wait and doc["state"] in ("running", "not-started", report.RETRYING)
           and time.monotonic() < deadline):
        time.sleep(0.5)
        doc = report.status_document(paths)
    if doc["provisioned"] and not paths.sandboxed:
        # Only here: a provisioned gateway's status also asks edge-core, at the settings' URL.
        from pep_agent.settings.config import load_settings

        try:
            settings = load_settings({"root": root})
        except PepError as e:
            # A broken env file must not hide where provisioning is: report it here.
            doc["edge_core"] = {"status": "unknown", "detail": e.message}
        else:
            doc["edge_core"] = report.edge_core(settings.status_url)
    if as_json:
        print(json.dumps(doc, indent=2, sort_keys=True))
    else:
        print(report.human(doc))
    raise typer.Exit(int(report.exit_code(doc["state"])))
