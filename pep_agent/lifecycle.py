"""After provisioning: verification once edge-core runs, and reprovisioning on the line.

Side effects: reprovision asks the server whether it holds a record for the serial, stops and
starts parsec and swtpm, moves the markers and the Parsec state aside (restored, with the old
identity, when the run fails before the new one is installed), runs the flow, and reboots or
restarts edge-core; verification reads the installed serial, polls edge-core's status
endpoint, then, under the run lock, writes its own journal fields and a marker.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from pep_agent import flow, state
from pep_agent.config import Settings
from pep_agent.errors import (
    AlreadyProvisionedError,
    BusyError,
    NotFoundError,
    PepError,
    VerificationError,
)
from pep_agent.steps import install
from pep_agent.system import fsutil
from pep_agent.system.leds import failure_state
from pep_agent.system.lock import RunLock

log = logging.getLogger("pep_agent")

PARSEC_UNIT = "parsec.service"
SWTPM_UNIT = "swtpm.service"


def reprovision(ctx: flow.Context) -> None:
    """Check, move the old identity aside, provision; put the old one back when the run ends
    before the new identity is installed and the server holds no record from this run."""
    reboot = ctx.settings.reboot
    ctx.settings.reboot = False
    try:
        flow.provision(ctx, before=_check_then_move_aside)
    except BaseException as e:  # a signal's SystemExit too: every ending restores
        if ctx.extra.get("moved_aside"):
            _restore_or_keep(ctx, e)
        raise
    for _, backup in _aside(ctx):
        fsutil.remove(backup)
    if reboot:
        ctx.services.reboot()
    else:
        ctx.services.act("restart", ctx.profile.edge_core_unit)
        ctx.services.act("restart", ctx.profile.identity_unit)


def _check_then_move_aside(ctx: flow.Context) -> None:
    """Under the run lock: everything a new identity needs is checked before anything moves."""
    before = dict(ctx.journal.data)
    try:
        flow.check_preflight(ctx)
        flow.discover_serial(ctx)
        flow.wait_network(ctx)
        _no_record_on_server(ctx)
    except BaseException:
        ctx.journal.data = before  # the checks change nothing, not even the journal
        ctx.journal.save()
        raise
    ctx.extra["moved_aside"] = True
    log.info("reprovision: checks passed; moving the current identity aside",
             extra=ctx.fields())
    if ctx.parsec:
        # The upstream reset of the TPM-backed storage, except that the old state is kept.
        ctx.services.act("stop", PARSEC_UNIT)
        ctx.services.act("stop", SWTPM_UNIT)
    for path, backup in _aside(ctx):
        fsutil.move_aside(path, backup)
    if ctx.parsec:
        ctx.services.act("start", SWTPM_UNIT)
        ctx.services.act("start", PARSEC_UNIT)
    # A saved answer that can no longer be installed is kept for the record, out of the way.
    paths = ctx.paths
    if paths.saved_response.exists():
        paths.saved_response.rename(
            paths.saved_response.with_name(f"response.abandoned-{int(time.time())}.json"))


def _no_record_on_server(ctx: flow.Context) -> None:
    """A record for this serial would make the identity request end in 409: stop now."""
    try:
        enrollment = ctx.client_factory().enrollment_id(ctx.serial)
    except NotFoundError:
        return
    except PepError as e:
        e.hint = f"{e.hint}; nothing was changed".lstrip("; ")
        raise
    raise AlreadyProvisionedError(
        f"the pep server holds a record for serial {ctx.serial} (enrollment id {enrollment}): "
        "a new identity request would be refused (409); nothing was changed",
        hint=f"remove the record of serial {ctx.serial} on the pep server (and its enrollment "
             f"id {enrollment} in the Portal if it was claimed), then run reprovision again")


def _aside(ctx: flow.Context) -> list[tuple[Path, Path]]:
    """What reprovision moves aside itself (the flow moves mcc_config and edge_gw_config)."""
    paths = ctx.paths
    found = [paths.provisioned_marker, paths.verified_marker]
    if ctx.parsec:
        found.append(paths.parsec_state)
    return [(p, p.with_name(p.name + install.PREVIOUS)) for p in found]


def _restore_or_keep(ctx: flow.Context, err: BaseException) -> None:
    """The recovery rule decides: staged credentials the server may hold a record for stay for
    the next run; otherwise the previous identity goes back and edge-core runs again."""
    paths = ctx.paths
    if paths.provisioned_marker.exists():
        return  # the new identity is installed
    if ctx.journal.data.get("injection") or paths.saved_response.exists():
        log.warning("reprovision failed after the server may have injected FCC: the previous "
                    "identity stays aside, the next `pep-agent provision` recovers the new one",
                    extra=ctx.fields())
        return
    try:
        if ctx.parsec:
            ctx.services.act("stop", PARSEC_UNIT)
            ctx.services.act("stop", SWTPM_UNIT)
        install.restore_previous(paths, ctx.profile)
        for path, backup in _aside(ctx):
            if backup.exists() or backup.is_symlink():
                fsutil.remove(path)
                os.rename(backup, path)
        if ctx.parsec:
            ctx.services.act("start", SWTPM_UNIT)
            ctx.services.act("start", PARSEC_UNIT)
        flow.unmask_edge_core(ctx)
        ctx.services.act("restart", ctx.profile.edge_core_unit)
    except (OSError, PepError) as e:
        text = e.message if isinstance(e, PepError) else (e.strerror or type(e).__name__)
        log.error("reprovision failed and the previous identity could not be put back (%s); "
                  "it stays in the *%s folders", text, install.PREVIOUS, extra=ctx.fields())
        return
    ctx.journal.best_effort = True
    ctx.journal.update(restored_previous=True)
    log.warning("reprovision failed; the previous identity is back in place and edge-core "
                "restarted", extra=ctx.fields())
    if isinstance(err, PepError):
        err.hint = f"{err.hint}; the previous identity was restored".lstrip("; ")


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
