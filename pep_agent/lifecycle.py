"""After provisioning: verification once edge-core runs, and reprovisioning on the line.

Side effects: reprovision stops/starts parsec and swtpm and removes the Parsec state (the
upstream erase procedure), discards the previous run's markers, runs the flow, and reboots or
restarts edge-core; verification polls edge-core's status endpoint and writes a marker.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from pep_agent import flow, state
from pep_agent.config import Settings
from pep_agent.errors import PepError, VerificationError
from pep_agent.system import fsutil
from pep_agent.system.leds import failure_state

log = logging.getLogger("pep_agent")

PARSEC_UNIT = "parsec.service"
SWTPM_UNIT = "swtpm.service"


def reprovision(ctx: flow.Context) -> None:
    """The upstream erase, then the whole flow; the old identity stays until the new one lands."""
    reboot = ctx.settings.reboot
    ctx.settings.reboot = False
    flow.provision(ctx, before=_erase)
    if reboot:
        ctx.services.reboot()
    else:
        ctx.services.act("restart", ctx.profile.edge_core_unit)
        ctx.services.act("restart", ctx.profile.identity_unit)


def _erase(ctx: flow.Context) -> None:
    """Forget the previous run; on a Parsec gateway, reset the TPM-backed storage as upstream."""
    paths, settings = ctx.paths, ctx.settings
    parsec = settings.parsec == "true" or (settings.parsec == "auto"
                                           and paths.parsec_socket.exists())
    if parsec:
        ctx.services.act("stop", PARSEC_UNIT)
        ctx.services.act("stop", SWTPM_UNIT)
        fsutil.remove(paths.parsec_state)
        ctx.services.act("start", SWTPM_UNIT)
        ctx.services.act("start", PARSEC_UNIT)
    # Forget the previous run, including a saved answer that can no longer be installed.
    for done in (paths.provisioned_marker, paths.verified_marker):
        fsutil.remove(done)
    if paths.saved_response.exists():
        paths.saved_response.rename(
            paths.saved_response.with_name(f"response.abandoned-{int(time.time())}.json"))


def verify_connection(settings: Settings) -> dict[str, Any]:
    """Poll edge-core until it is connected as the provisioned serial; record the outcome."""
    from pep_agent.verify import verify

    paths, profile = settings.paths, settings.platform
    journal = state.Journal(paths.journal)
    led = flow.make_led_for(settings)
    serial = str(journal.data.get("serial") or _marker_serial(settings))
    if not serial:
        raise VerificationError("this gateway has not been provisioned", hint="run provision")
    journal.update(step="verify")
    try:
        result = verify(status_url=settings.status_url or profile.status_url, serial=serial,
                        deadline_s=settings.verify_timeout)
    except PepError as e:
        journal.update(verify_error=e.message)
        log.error("%s", e.message, extra={"PEP_STEP": "verify", "PEP_SERIAL": serial,
                                          "PEP_EXIT_CODE": int(e.code)})
        e.logged = True
        led.show(failure_state(e.code))
        raise
    fsutil.atomic_write(paths.verified_marker, f"{serial}\n".encode(), mode=0o644)
    journal.update(state=state.VERIFIED, verified_at=time.time(), verify_error=None)
    log.info("edge-core connected as %s", serial, extra={"PEP_STEP": "verify",
                                                         "PEP_SERIAL": serial})
    led.show("verified")
    return result


def _marker_serial(settings: Settings) -> str:
    try:
        return settings.paths.provisioned_marker.read_text(encoding="utf-8").strip()
    except OSError:
        return ""
