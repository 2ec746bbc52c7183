"""The runner: under the run lock, observe the gateway once, let the recovery rule decide, act
on the decision and run the steps from where it says. How a run ends is ending.py's: every
way out of `provision` and `reprovision` goes through its `run`.

Side effects: the journal, sd_notify and the log; what observing reads (the state directory,
the installed identity, FCC's stored credentials, the serial command); acting on the recovery
rule's decisions (holding edge-core, waiting for or stopping FCC, reading the server's record,
deleting discarded credentials, restarting FCC); the steps' own through the context.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import replace

from pep_agent import journal, state
from pep_agent.errors import PepError
from pep_agent.flow import ending, recovery, request
from pep_agent.flow.context import Context
from pep_agent.flow.recovery import Decision, Ended, Held, Observation
from pep_agent.flow.steps import STEP_NAMES, STEPS, RequestFailed, Step, fcc_ended
from pep_agent.gateway import install
from pep_agent.system import fsutil, proc

log = logging.getLogger("pep_agent")


def provision(ctx: Context) -> str:
    """Run (or resume) the flow. Returns "provisioned" or "already-provisioned"."""
    with ending.run(ctx):
        return run_plan(ctx)


def run_plan(ctx: Context) -> str:
    """Observe, decide where to start, run the steps from there."""
    decision = plan(ctx)
    if decision.start is None or decision.adopt:
        # Type=notify: a run that ends here (or only vouches for an installed identity) is a
        # clean start too.
        ctx.notifier.ready()
    if decision.start is None:
        return "already-provisioned"
    try:
        _run_steps(ctx, decision.start, decision.last)
    finally:
        ctx.stop_fcc()
        _after_run(ctx)
    return "already-provisioned" if decision.adopt else "provisioned"


def plan(ctx: Context) -> Decision:
    """Observe, let the recovery rule decide, act on it: the decision says where the run goes
    on from (`start`, None when the gateway is provisioned)."""
    seen = observe(ctx)
    # READY=1 only once edge-core is held: the unit is ordered Before=edge-core, so systemd
    # keeps edge-core back until then. The hold lives in /run: a run resumed after a power
    # cut takes it again before anything else, before the recovery rule may wait on FCC or
    # the server (and may fail: edge-core must not start on an empty identity and create its
    # own mcc_config meanwhile).
    if seen.hold_edge_core:
        ctx.services.hold(ctx.profile.edge_core_unit)
        _resume(ctx)
    return _settle(ctx, seen)


def observe(ctx: Context, ended: Ended | None = None, record: Held | None = None
            ) -> Observation:
    """The gateway's state, read once: the disk, the journal (as loaded under the run lock)
    and this run's FCC; `ended` and `record` as the run found them."""
    paths, j = ctx.paths, ctx.journal.record
    marker = paths.provisioned_marker.exists()
    answered = paths.saved_response.exists()
    staged = install.credentials_ready(paths, ctx.profile, ctx.parsec)
    installed = None
    if not (marker or answered or j.injection or ctx.replacing or ended):
        found = install.own_identity(ctx.settings)
        installed = recovery.Installed(*found) if found else None
    if ended is not None and ended.how == recovery.NO_ANSWER and fcc_ended(ctx):
        ended = replace(ended, how=recovery.FCC_ENDED)
    return Observation(
        marker=marker, answered=answered, injection=bool(j.injection), staged=staged,
        fcc_running=ctx.fcc is not None or isinstance(j.fcc_pid, int),
        installed=installed, replacing=ctx.replacing, request=ended, record=record,
        injection_s=ctx.settings.http_timeout)


def _resume(ctx: Context) -> None:
    """A resumed run: edge-core is held again; the context comes back from the journal."""
    ctx.notifier.ready()
    j = ctx.journal.record
    ctx.serial = j.serial or ""
    ctx.parsec = bool(j.parsec)
    ctx.interface = str(j.interface or "")
    ctx.journal.update(state=state.RUNNING, resumed=True, error=None, **journal.own_pid())


def _settle(ctx: Context, seen: Observation, err: PepError | None = None) -> Decision:
    """Decide, and do the looks a decision asks for until one decides what the run does;
    act on it. Raises the error a decision ends the run with."""
    for _ in range(_MAX_LOOKS):
        decision = recovery.decide(seen)
        log.debug("recovery: %s", decision.reason)
        if decision.discard:
            log.info("%s; %s", decision.reason, "discarding the staged credentials"
                     if seen.staged else "nothing was staged")
            _drop_staged(ctx, store=ctx.parsec, injection=True)
        record = seen.record
        if decision.settle:
            _let_fcc_finish(ctx)
        elif decision.ask or decision.watch:
            record = _look(ctx, seen, decision, err)
        else:
            break
        seen = observe(ctx, seen.request, record)
    else:
        raise PepError(f"recovery: still looking after {_MAX_LOOKS} looks ({decision.reason})")
    if decision.error:
        raise ending.decision_error(ctx, seen, decision, err)
    if decision.adopt:
        assert seen.installed is not None
        ctx.serial, ctx.parsec = seen.installed.serial, seen.installed.parsec
        # error=None: a deferral (exit 27) recorded by an earlier run is cleared by this
        # confirmation.
        ctx.journal.update(serial=ctx.serial, enrollment_id=seen.installed.enrollment,
                           parsec=ctx.parsec, injection=None, adopted=True, error=None)
    elif decision.recover:
        assert seen.record is not None and seen.record.enrollment is not None
        request.recover(ctx, seen.record.enrollment)
    elif decision.fresh:
        _start_afresh(ctx)
    if decision.start is not None or decision.restart_fcc or decision.error:
        log.info("recovery: %s", decision.reason)
    return decision


# Settle, ask, and the watch's looks (at most injection_s / WATCH_GAP_S of them), bounded.
_MAX_LOOKS = 200


def _look(ctx: Context, seen: Observation, decision: Decision, err: PepError | None) -> Held:
    """The server's record, as the decision asks: now, or after a wait (a watch)."""
    watched = seen.record.watched_s + decision.wait_s if seen.record else 0.0
    if decision.watch:
        ctx.say(f"the server's record of {ctx.serial} has no enrollment id yet; looking "
                f"again in {decision.wait_s:g} s")
        ctx.clock.sleep(decision.wait_s)
    log.warning("%s%s", decision.reason, f" ({_HOW[seen.request.how]}: {err.message})"
                if err is not None and seen.request else "")
    serial = seen.installed.serial if seen.installed else ctx.serial
    return request.look_up(ctx, serial, patient=decision.patient, watched=watched)


_HOW = {recovery.INJECTION_FAILED: "the server could not inject FCC",
        recovery.CONFLICT: "409 to the identity request",
        recovery.REFUSED: "the request was refused",
        recovery.BAD_ANSWER: "the server's answer failed the checks",
        recovery.FCC_ENDED: "FCC ended but no answer came",
        recovery.NO_ANSWER: "no usable answer came"}


def _let_fcc_finish(ctx: Context) -> None:
    """Let FCC finish storing what it received, as long as wait-fcc would (with Parsec its exit
    is the only sign that the store is complete), then stop it."""
    limit = ctx.settings.fcc_exit_timeout
    leftover = ctx.journal.record.fcc_pid
    if ctx.fcc is not None:
        if proc.wait(ctx.fcc.child, deadline=ctx.clock.monotonic() + limit) is None:
            log.warning("FCC did not exit within %g s; stopping it", limit)
        ctx.stop_fcc()
    if isinstance(leftover, int):
        proc.reap_leftover(leftover, ctx.journal.record.fcc_started,
                           wait_first=min(limit, 30) if ctx.paths.saved_response.exists()
                           else limit)
    ctx.journal.update(fcc_pid=None)


def _start_afresh(ctx: Context) -> None:
    """Anything before the first request starts over: FCC left over from an interrupted run
    is stopped, staging removed, the journal reset."""
    leftover = ctx.journal.record.fcc_pid
    if isinstance(leftover, int) and proc.reap_leftover(leftover,
                                                        ctx.journal.record.fcc_started):
        log.info("stopped FCC left over from an interrupted run (pid %d)", leftover)
    _drop_staged(ctx, store=False)
    ctx.journal.reset(run_id=uuid.uuid4().hex[:12])


def _drop_staged(ctx: Context, *, store: bool, injection: bool = False) -> None:
    """Remove FCC's staging folder; with `store`, the Parsec store FCC wrote in mcc_config
    (whose previous content was moved aside); with `injection`, the journal's mark that one
    may have happened goes too (the server holds no record)."""
    ctx.stop_fcc()
    install.drop_staged(ctx.paths, ctx.profile, store=store)
    if injection:
        ctx.journal.update(injection=None)


def _after_run(ctx: Context) -> None:
    """At the end of every run: nothing was sent to the server, so nothing staged is worth
    keeping. Once an injection may have happened, only a decision's discard deletes."""
    seen = Observation(answered=ctx.paths.saved_response.exists(),
                       injection=bool(ctx.journal.record.injection),
                       marker=ctx.paths.provisioned_marker.exists())
    if seen.marker or recovery.injected(seen):
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
            ended = Ended(recovery.how_it_ended(failed.error), earlier=failed.earlier,
                          restarts_left=restarts < ctx.settings.injection_retries,
                          fcc_storage=failed.fcc_storage or "")
            if _settle(ctx, observe(ctx, ended), failed.error).restart_fcc:
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
        if step.check is not None and not ctx.checked:
            step.check(ctx)
        step.run(ctx)
        outcome = "done"
    except (RequestFailed, PepError):
        raise
    except OSError as e:
        raise fsutil.install_error(f"step {step.name}", e) from None
    except Exception as e:
        raise ending.bug(e, f" in step {step.name}") from None
    finally:
        try:
            j.step_ended(step.name, outcome, ctx.clock.monotonic() - started)
        except OSError as e:
            if outcome == "done":
                raise
            # A failed step's own error goes on to the recovery rule: a disk FCC filled is
            # freed by its discard, and the journal written again after it.
            log.warning("cannot record the end of step %s: %s", step.name,
                        e.strerror or type(e).__name__)
    ctx.crash_at(step.name, "after")
