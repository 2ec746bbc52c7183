"""After provisioning: verification once edge-core runs, and reprovisioning on the line.

Side effects: reprovision stops/starts parsec and swtpm and removes the Parsec state (the
upstream erase procedure), discards the previous run's markers, runs the flow, and reboots or
restarts edge-core; verification reads the installed serial, polls edge-core's status
endpoint, then, under the run lock, writes its own journal fields and a marker.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from pep_agent import flow, state
from pep_agent.config import Settings
from pep_agent.errors import BusyError, PepError, VerificationError
from pep_agent.system import fsutil
from pep_agent.system.leds import failure_state
from pep_agent.system.lock import RunLock

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
    """Poll edge-core until it is connected as the installed serial; record the outcome.

    The journal belongs to provisioning runs: verify records only its own fields, under the run
    lock, on the journal as it is then, and only while the gateway still holds the serial it
    polled for, so a reprovision during the poll is never undone.
    """
    from pep_agent.verify import verify

    profile = settings.platform
    led = flow.make_led_for(settings)
    serial = installed_serial(settings)
    if not serial:
        raise VerificationError("this gateway has not been provisioned", hint="run provision")
    try:
        result = verify(status_url=settings.status_url or profile.status_url, serial=serial,
                        deadline_s=settings.verify_timeout)
    except PepError as e:
        error = {"code": int(e.code), "name": e.code.name, "message": e.message,
                 "hint": e.hint}
        _record(settings, serial, verify_state="failed", verify_error=error,
                verify_failed_at=time.time())
        log.error("%s", e.message, extra={"PEP_STEP": "verify", "PEP_SERIAL": serial,
                                          "PEP_EXIT_CODE": int(e.code)})
        e.logged = True
        led.show(failure_state(e.code))
        raise
    _record(settings, serial, verify_state="verified", verify_error=None,
            verified_at=time.time())
    log.info("edge-core connected as %s", serial, extra={"PEP_STEP": "verify",
                                                         "PEP_SERIAL": serial})
    led.show("verified")
    return result


def _record(settings: Settings, serial: str, **fields: Any) -> None:
    """Write verify's outcome, unless the gateway changed hands while verify was polling."""
    paths = settings.paths
    try:
        with RunLock(paths.lock):
            now = installed_serial(settings)
            if now != serial:
                raise VerificationError(
                    f"the gateway was reprovisioned while verify waited for serial {serial} "
                    f"(now {now or 'not provisioned'}); nothing recorded",
                    hint="run `pep-agent verify` again")
            journal = state.Journal(paths.journal)  # as it is now, not as it was at the start
            if fields.get("verify_state") == "verified":
                fsutil.atomic_write(paths.verified_marker, f"{serial}\n".encode(), mode=0o644)
                if journal.data.get("state") in (None, state.DONE):
                    fields["state"] = state.VERIFIED
            journal.update(**fields)
    except BusyError:
        raise BusyError("a provisioning run started while verify waited; nothing recorded",
                        hint="see `pep-agent status`; verify again once that run has ended"
                        ) from None
    except OSError as e:
        raise fsutil.install_error("recording the verification", e) from None


def installed_serial(settings: Settings) -> str:
    """The serial edge-core will connect as: identity.json's, else the provisioned marker's.

    Only the serialNumber field is read; nothing else of identity.json is kept or logged.
    """
    paths = settings.paths
    try:
        identity = json.loads(paths.under(settings.platform.identity_json).read_bytes())
        serial = identity.get("serialNumber") if isinstance(identity, dict) else None
        if isinstance(serial, str) and serial.strip():
            return serial.strip()
    except (OSError, ValueError):
        pass
    try:
        return paths.provisioned_marker.read_text(encoding="utf-8").strip()
    except (OSError, ValueError):
        return ""
