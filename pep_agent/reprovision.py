"""Reprovisioning on the line: a first-class start of the provisioning plan that replaces the
installed identity.

Side effects: none until its checks pass (preflight, serial, network, and the server holding
no record for the serial; they write nothing, not even the journal). Then, under the run
lock: moves the markers and the Parsec state aside (parsec and swtpm stopped meanwhile), runs
the plan, and puts the previous identity back when the run fails before the new one is
installed and the recovery rule allows it; at the end reboots or restarts edge-core.
"""

from __future__ import annotations

import logging

from pep_agent.errors import AlreadyProvisionedError, NotFoundError, PepError, Reported
from pep_agent.flow import ending, recovery, runner
from pep_agent.flow.context import Context
from pep_agent.flow.recovery import Observation
from pep_agent.flow.steps import STEPS
from pep_agent.gateway.backup import SUFFIX, Backup

log = logging.getLogger("pep_agent")


def reprovision(ctx: Context) -> None:
    """Check, move the old identity aside, provision; put the old one back when the run ends
    before the new identity is installed and the server holds no record from this run."""
    ctx.replacing, ctx.reboot_at_end = True, False  # edge-core is restarted below instead
    with ending.run(ctx) as ended:
        ended.checking = True
        check(ctx)
        ended.checking = False
        _move_aside(ctx, ended)
        runner.run_plan(ctx)
    # Nothing is aside any more: mark-provisioned discarded the previous identity.
    if ctx.settings.reboot:
        ctx.services.reboot()
    else:
        ctx.services.act("restart", ctx.profile.edge_core_unit)
        ctx.services.act("restart", ctx.profile.identity_unit)


def _restore_if_allowed(ctx: Context, backup: Backup, err: Reported) -> None:
    """After a failed reprovision: the previous identity goes back only when the new one is
    not installed and the server may hold no record of an injection (staged credentials it
    may hold a record for stay for the next run, which recovers them)."""
    if ctx.paths.provisioned_marker.exists():
        return  # the new identity is installed
    seen = Observation(answered=ctx.paths.saved_response.exists(),
                       injection=bool(ctx.journal.record.injection))
    if recovery.injected(seen):
        log.warning("reprovision failed after the server may have injected FCC: the previous "
                    "identity stays aside until the server's record is read")
        return
    _restore(ctx, backup, err)


def check(ctx: Context) -> None:
    """Everything a new identity needs, checked before anything moves (every step's check,
    and the server holding no record for the serial); changes nothing."""
    for step in STEPS:
        if step.check is not None:
            step.check(ctx)
    try:
        enrollment = ctx.client_factory().enrollment_id(ctx.serial)
    except NotFoundError:
        ctx.checked = True
        return
    except PepError as e:
        e.hint = f"{e.hint}; nothing was changed".lstrip("; ")
        raise
    # A record for this serial would make the identity request end in 409: stop now.
    raise AlreadyProvisionedError(
        f"the pep server holds a record for serial {ctx.serial} (enrollment id {enrollment}): "
        "a new identity request would be refused (409); nothing was changed",
        hint=f"remove the record of serial {ctx.serial} on the pep server (and its enrollment "
             f"id {enrollment} in the Portal if it was claimed), then run reprovision again")


def _move_aside(ctx: Context, ended: ending.Ending) -> None:
    """The markers and, with Parsec, its state go aside (clear-identity sets the identity
    folders aside), to come back when the run fails."""
    backup = Backup(ctx.paths, ctx.profile)
    # Every ending from here on (a signal too) is recorded first, then this runs.
    ended.on_failure = lambda err: _restore_if_allowed(ctx, backup, err)
    log.info("reprovision: checks passed; moving the current identity aside")
    parsec = ctx.services if ctx.parsec else None
    backup.set_aside([*backup.markers, *([backup.parsec_state] if parsec else [])], parsec)
    # A saved answer that can no longer be installed is kept for the record, out of the way.
    saved = ctx.paths.saved_response
    if saved.exists():
        saved.rename(saved.with_name(f"response.abandoned-{int(ctx.clock.now())}.json"))


def _restore(ctx: Context, backup: Backup, err: Reported) -> None:
    """The previous identity goes back and edge-core runs again."""
    edge_core = ctx.profile.edge_core_unit
    try:
        backup.restore(ctx.services if ctx.parsec else None)
        ctx.services.release(edge_core)
        ctx.services.act("restart", edge_core)
    except (OSError, PepError) as e:
        text = e.message if isinstance(e, PepError) else (e.strerror or type(e).__name__)
        log.error("reprovision failed and the previous identity could not be put back (%s); "
                  "it stays in the *%s folders", text, SUFFIX)
        return
    ctx.journal.best_effort = True
    ctx.journal.update(restored_previous=True)
    log.warning("reprovision failed; the previous identity is back in place and edge-core "
                "restarted")
    if isinstance(err, PepError):
        err.hint = f"{err.hint}; the previous identity was restored".lstrip("; ")
