"""The runner: under the run lock, observe the gateway, let the recovery rule decide, act on
the decision and run the steps from where it says. How a run ends is ending.py's: every way
out of `provision` and `reprovision` goes through its `run`.

Side effects: the journal, sd_notify and the log; acting on the recovery rule's decisions
(holding edge-core, waiting for or stopping FCC, reading the server's record, deleting
discarded credentials, rewriting an adopted identity's marker, restarting FCC); the steps'
own through the context.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from pep_agent import journal, state
from pep_agent.errors import (
    PepError,
)
from pep_agent.flow import ending, recovery, request
from pep_agent.flow.context import Context
from pep_agent.flow.recovery import Decision, Observation
from pep_agent.flow.steps import STEP_NAMES, STEPS, RequestFailed, Step, stop_edge_core
from pep_agent.gateway import identity as ident
from pep_agent.gateway import install
from pep_agent.gateway.backup import Backup
from pep_agent.system import fsutil, proc

log = logging.getLogger("pep_agent")


def provision(ctx: Context) -> str:
    """Run (or resume) the flow. Returns "provisioned" or "already-provisioned"."""
    with ending.run(ctx):
        return run_plan(ctx)


def run_plan(ctx: Context) -> str:
    """Observe, decide where to start, run the steps from there."""
    start = plan(ctx)
    if start is None:
        # Type=notify: a run that ends here (an adopted identity) is a clean start too.
        ctx.notifier.ready()
        return "already-provisioned"
    try:
        _run_steps(ctx, start)
    finally:
        ctx.stop_fcc()
        _after_run(ctx)
    return "provisioned"


def plan(ctx: Context) -> str | None:
    """Observe, let the recovery rule decide, act on it: the step to start from, None when
    the gateway is provisioned."""
    seen = recovery.observe(ctx)
    # READY=1 only once edge-core is held: the unit is ordered Before=edge-core, so systemd
    # keeps edge-core back until then. The hold lives in /run: a run resumed after a power
    # cut takes it again before anything else, before the recovery rule may wait on FCC or
    # the server (and may fail: edge-core must not start on an empty identity and create its
    # own mcc_config meanwhile).
    if seen.hold_edge_core:
        stop_edge_core(ctx)
        ctx.notifier.ready()
        _resume(ctx)
    return _settle(ctx, seen)[1].start


def _resume(ctx: Context) -> None:
    """A resumed run: the context comes back from the journal."""
    j = ctx.journal.record
    ctx.serial = j.serial or ""
    ctx.parsec = bool(j.parsec)
    ctx.interface = str(j.interface or "")
    ctx.journal.update(state=state.RUNNING, resumed=True, error=None, **journal.own_pid())


def _settle(ctx: Context, seen: Observation,
            err: PepError | None = None) -> tuple[Observation, Decision]:
    """Decide, and do the looks a decision asks for until one decides what the run does;
    act on it. Raises the error a decision ends the run with."""
    looks = 0
    while True:
        decision = recovery.decide(seen)
        log.debug("recovery: %s", decision.reason, extra=ctx.fields())
        if decision.discard:
            _discard(ctx, decision.reason, staged=seen.staged)
        if not (decision.settle or decision.ask or decision.watch):
            break
        looks += 1
        if looks > _MAX_LOOKS:
            raise PepError(f"recovery: still looking after {_MAX_LOOKS} looks "
                           f"({decision.reason})")
        record, watched = seen.record, 0.0
        if decision.settle:
            _let_fcc_finish(ctx)
        elif decision.watch and record is not None:
            gap = recovery.watch_gap(seen)
            ctx.say(f"the server's record of {ctx.serial} has no enrollment id yet; looking "
                    f"again in {gap:g} s")
            ctx.clock.sleep(gap)
            watched = record.watched_s + gap
        if decision.ask or decision.watch:
            log.warning("%s%s", decision.reason, f" ({_HOW[seen.request.how]}: {err.message})"
                        if err is not None and seen.request else "", extra=ctx.fields())
            record = recovery.look_up(ctx, ctx.client_factory(), seen, watched=watched)
        seen = recovery.observe(ctx, seen.request, record)
    if decision.error:
        raise ending.decision_error(ctx, seen, decision, err)
    if decision.adopt:
        _adopt(ctx, seen)
    elif decision.recover:
        assert seen.record is not None and seen.record.enrollment is not None
        request.commit(ctx, _recovered(ctx, seen.record.enrollment))
    elif decision.fresh:
        _start_afresh(ctx)
    if decision.start is not None or decision.restart_fcc or decision.error:
        log.info("recovery: %s", decision.reason, extra=ctx.fields())
    return seen, decision


_HOW = {recovery.INJECTION_FAILED: "the server could not inject FCC",
        recovery.CONFLICT: "409 to the identity request",
        recovery.REFUSED: "the request was refused",
        recovery.BAD_ANSWER: "the server's answer failed the checks",
        recovery.FCC_ENDED: "FCC ended but no answer came",
        recovery.NO_ANSWER: "no usable answer came"}
# Settle, ask, and the watch's looks (at most injection_s / WATCH_GAP_S of them), bounded.
_MAX_LOOKS = 200


def _let_fcc_finish(ctx: Context) -> None:
    """Let FCC finish storing what it received, as long as wait-fcc would (with Parsec its exit
    is the only sign that the store is complete), then stop it."""
    limit = ctx.settings.fcc_exit_timeout
    leftover = ctx.journal.record.fcc_pid
    if ctx.fcc is not None:
        if proc.wait(ctx.fcc.child, deadline=ctx.clock.monotonic() + limit) is None:
            log.warning("FCC did not exit within %g s; stopping it", limit, extra=ctx.fields())
        ctx.stop_fcc()
    if isinstance(leftover, int):
        proc.reap_leftover(leftover, ctx.journal.record.fcc_started,
                           wait_first=min(limit, 30) if ctx.paths.saved_response.exists()
                           else limit)
    ctx.journal.update(fcc_pid=None)


def _discard(ctx: Context, reason: str, *, staged: bool) -> None:
    """The server holds no record: FCC's staged credentials (with Parsec, the store it wrote in
    mcc_config, whose previous content was moved aside) are worth nothing; delete them."""
    log.info("%s; %s", reason, "discarding the staged credentials" if staged
             else "nothing was staged", extra=ctx.fields())
    ctx.stop_fcc()
    _drop_staged(ctx, store=ctx.parsec)
    ctx.journal.update(injection=None)


def _drop_staged(ctx: Context, *, store: bool) -> None:
    """Remove FCC's staging folder; with `store`, the Parsec store FCC wrote in mcc_config."""
    fsutil.remove(install.staging_dir(ctx.paths, ctx.profile))
    if store:
        fsutil.remove(install.targets(ctx.paths, ctx.profile)[0])


def _recovered(ctx: Context, enrollment: str) -> dict[str, Any]:
    """The answer of an injection the server holds a record of, rebuilt from that record."""
    install.secure_credentials(ctx.paths, ctx.profile, ctx.parsec, ctx.serial, enrollment)
    log.info("the server holds the record of %s: identity.json is rebuilt from the journalled "
             "request and its enrollment id", ctx.serial, extra=ctx.fields())
    ctx.journal.update(rebuilt_answer=True)
    return ident.rebuild_identity(ctx.journal.record.injection or {}, enrollment,
                                  ctx.clock.now())


def _adopt(ctx: Context, seen: Observation) -> None:
    """The installed identity is the one the server holds: the marker is rewritten."""
    assert seen.installed is not None
    ctx.serial, ctx.parsec = seen.installed.serial, seen.installed.parsec
    install.make_durable(ctx.paths, ctx.profile)
    Backup(ctx.paths, ctx.profile).discard()  # as mark-provisioned does
    fsutil.atomic_write(ctx.paths.provisioned_marker, f"{ctx.serial}\n".encode(), mode=0o644)
    # error=None: a deferral (exit 27) recorded by an earlier run is cleared by this confirmation.
    ctx.journal.update(state=state.DONE, serial=ctx.serial,
                       enrollment_id=seen.installed.enrollment, injection=None,
                       finished_at=ctx.clock.now(), adopted=True, error=None)
    ctx.services.release(ctx.profile.edge_core_unit)
    ctx.led.show("success")


def _start_afresh(ctx: Context) -> None:
    """Anything before the first request starts over: FCC left over from an interrupted run
    is stopped, staging removed, the journal reset."""
    leftover = ctx.journal.record.fcc_pid
    if isinstance(leftover, int) and proc.reap_leftover(leftover,
                                                        ctx.journal.record.fcc_started):
        log.info("stopped FCC left over from an interrupted run (pid %d)", leftover)
    _drop_staged(ctx, store=False)
    ctx.journal.reset(run_id=uuid.uuid4().hex[:12])


def _after_run(ctx: Context) -> None:
    """At the end of every run: nothing was sent to the server, so nothing staged is worth
    keeping. Once an injection may have happened, only `_discard` deletes."""
    seen = Observation(answered=ctx.paths.saved_response.exists(),
                       injection=bool(ctx.journal.record.injection))
    if recovery.injected(seen) or ctx.paths.provisioned_marker.exists():
        return
    # FCC writes a Parsec store in place from its start: it holds nothing.
    _drop_staged(ctx, store=ctx.parsec and ctx.cleared)


def _run_steps(ctx: Context, start: str, last: str = state.REBOOT) -> None:
    """The steps from `start` to `last`. A failed identity request goes to the recovery rule,
    which recovers the answer from the server's record, or has FCC started afresh and asked
    again (from start-fcc), or ends the run."""
    at, restarts = STEP_NAMES.index(start), 0
    while at <= STEP_NAMES.index(last):
        step = STEPS[at]
        try:
            _run_step(ctx, step)
        except RequestFailed as failed:
            ended = recovery.Ended(recovery.how_it_ended(failed.error, recovery.fcc_ended(ctx)),
                                   earlier=failed.earlier,
                                   restarts_left=restarts < ctx.settings.injection_retries)
            if _settle(ctx, recovery.observe(ctx, ended), failed.error)[1].restart_fcc:
                install.fcc_storage_failed(ctx.paths, ctx.profile, failed.fcc_storage)
                restarts += 1
                ctx.say(f"the server holds no record of this run's request "
                        f"({failed.error.message}); restarting FCC "
                        f"({restarts}/{ctx.settings.injection_retries})")
                at = STEP_NAMES.index(state.START_FCC)
                continue
            ctx.journal.step_ended(step.name, "done", 0.0)  # the answer was recovered
        if step.name == state.STOP_EDGE_CORE:
            ctx.notifier.ready()
        at += 1


def request_identity(ctx: Context) -> None:
    """The identity request step, with the recovery rule after it fails (FCC restarted and
    asked again as it decides); the next steps are not run."""
    _run_steps(ctx, state.REQUEST_IDENTITY, last=state.REQUEST_IDENTITY)


def _run_step(ctx: Context, step: Step) -> None:
    j = ctx.journal
    ctx.crash_at(step.name, "before")
    j.step_started(step.name)
    ctx.led.show(step.led)
    ctx.say(step.name)
    started, outcome = ctx.clock.monotonic(), "failed"
    try:
        step.run(ctx)
        outcome = "done"
    except (RequestFailed, PepError):
        raise
    except OSError as e:
        raise fsutil.install_error(f"step {step.name}", e) from None
    except Exception as e:
        raise ending.bug(ctx, e, f" in step {step.name}") from None
    finally:
        try:
            j.step_ended(step.name, outcome, ctx.clock.monotonic() - started)
        except OSError as e:
            if outcome == "done":
                raise
            # A failed step's own error goes on to the recovery rule: a disk FCC filled is
            # freed by its discard, and the journal written again after it.
            log.warning("cannot record the end of step %s: %s", step.name,
                        e.strerror or type(e).__name__, extra=ctx.fields())
    ctx.crash_at(step.name, "after")

