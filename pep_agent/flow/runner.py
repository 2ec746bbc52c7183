"""The runner: under the run lock, observe the gateway, let the recovery rule decide, act on
the decision and run the steps from where it says; and the one place a run ends.

Whatever ends a run, `run` records it the same way (`end`: the journal, one log line,
sd_notify's status, the LED), then calls the run's on-failure hook (reprovision's restore).
An unexpected exception (a bug) logs its traceback at ERROR, once, here.

Side effects: the state directory and its run lock, the journal, the LED, sd_notify and the
log; acting on the recovery rule's decisions (holding edge-core, waiting for or stopping FCC,
deleting discarded credentials, rewriting an adopted identity's marker, restarting FCC); the
steps' own through the context.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from pep_agent import journal, state
from pep_agent.errors import (
    AbortedError,
    IdentityUnconfirmedError,
    PepError,
    Reported,
    ResumeError,
    ServerUnreachableError,
    StateError,
)
from pep_agent.exit_codes import Exit
from pep_agent.flow import recovery, request
from pep_agent.flow.context import Context
from pep_agent.flow.recovery import Decision, Observation
from pep_agent.flow.steps import STEP_NAMES, STEPS, RequestFailed, Step, stop_edge_core
from pep_agent.gateway import identity as ident
from pep_agent.gateway import install
from pep_agent.gateway.backup import Backup, aside
from pep_agent.journal import Journal
from pep_agent.paths import Paths
from pep_agent.system import fsutil, proc
from pep_agent.system.led_signals import failure_state
from pep_agent.system.lock import RunLock

log = logging.getLogger("pep_agent")


def provision(ctx: Context) -> str:
    """Run (or resume) the flow. Returns "provisioned" or "already-provisioned"."""
    with run(ctx):
        return run_plan(ctx)


class Ending:
    """How the run in `run` ends on failure: the hook is called once the failure is recorded
    (reprovision sets it once its identity is moved aside). While `checking`, an operator's
    error is a failed check that changed nothing, and is not recorded (a bug still is)."""

    def __init__(self) -> None:
        self.on_failure: Callable[[Reported], None] | None = None
        self.checking = False


@contextlib.contextmanager
def run(ctx: Context) -> Iterator[Ending]:
    """The run lock held and the journal as the last run left it; every way out of the block
    but a return is recorded once (`end`), then handed to the on-failure hook. Another run
    holding the lock (BusyError) is not this run's ending: nothing is recorded."""
    ending = Ending()
    with contextlib.ExitStack() as held:
        try:
            # Created here, its entry fsync'd: a state directory lost in a power cut would
            # lose the journal that says an injection may have happened.
            fsutil.make_dir(ctx.paths.state_dir, mode=0o700)
            held.enter_context(RunLock(ctx.paths.lock))
            # What another run wrote before we held the lock counts, not what we read first.
            ctx.journal.reload()
        except OSError as e:
            # The lock or the journal cannot be written (a full or read-only disk): the
            # operator needs the directory and the setting that moves it.
            raise _ended(ctx, ending, state_error(ctx.paths, e)) from None
        try:
            yield ending
        except (PepError, AbortedError) as e:
            err = _ended(ctx, ending, e)
            if err is e:
                raise
            raise err from None
        except OSError as e:
            raise _ended(ctx, ending, state_error(ctx.paths, e)) from None
        except Exception as e:
            raise _ended(ctx, ending, bug(ctx, e, "")) from None


def _ended(ctx: Context, ending: Ending, err: Any) -> Any:
    if not err.logged and not (ending.checking and err.code != Exit.INTERNAL):
        end(ctx, err)
    if ending.on_failure is not None:
        hook, ending.on_failure = ending.on_failure, None
        hook(err)
    return err


def outcome(err: Reported, provisioned: bool) -> str:
    """The state a run that ended with `err` leaves: a failure after the marker (the reboot,
    a bad setting of a later run) does not unprovision the gateway. An identity the server
    could not confirm is no failure either: the gateway works on it, deferred."""
    if provisioned:
        return state.DONE
    return state.DEFERRED if err.code == Exit.UNCONFIRMED else state.FAILED


def record_end(j: Journal, err: Reported, *, provisioned: bool, now: float,
               **more: Any) -> str:
    """The journal's part of an ending; every recorder of an ending writes it so. Returns the
    state recorded."""
    ended = outcome(err, provisioned)
    j.update(state=ended, finished_at=now, error=err.as_dict(), **more)
    return ended


def end(ctx: Context, err: Reported) -> None:
    """The run ended with `err`: journal, log line, sd_notify status, LED."""
    provisioned = ctx.paths.provisioned_marker.exists()
    deferred = outcome(err, provisioned) == state.DEFERRED
    try:
        record_end(ctx.journal, err, provisioned=provisioned, now=ctx.clock.now(),
                   **({"serial": ctx.serial} if deferred else {}))
    except OSError as e:
        # Still report the failure itself; the journal then says the run was interrupted.
        log.warning("cannot record the failure in %s: %s", ctx.journal.path,
                    e.strerror or type(e).__name__)
    log.log(logging.WARNING if deferred else logging.ERROR, "%s", err.message,
            extra=ctx.fields(PEP_EXIT_CODE=int(err.code)))
    err.logged = True
    ctx.notifier.status(f"{state.DEFERRED if deferred else 'failed'}: {err.message}")
    ctx.led.show(state.DEFERRED if deferred else failure_state(err.code))


def bug(ctx: Context, e: Exception, where: str) -> PepError:
    """An unexpected exception: its traceback to the log at ERROR (the log's redaction applies);
    the error the operator sees."""
    log.error("internal error%s: %s", where, type(e).__name__, exc_info=e, extra=ctx.fields())
    return PepError(f"internal error{where}: {type(e).__name__}",
                    hint="report this with the traceback from the log")


def state_error(paths: Paths, e: OSError) -> StateError:
    err = fsutil.os_error(StateError, f"cannot write the agent's state in {paths.state_dir}",
                          e, else_hint="make it writable")
    err.hint += "; or set PEP_STATE_DIR to a writable directory on the identity's partition"
    return err


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
            _discard(ctx, decision.reason)
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
        raise _error(ctx, seen, decision, err)
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


def _discard(ctx: Context, reason: str) -> None:
    """The server holds no record: FCC's staged credentials (with Parsec, the store it wrote in
    mcc_config, whose previous content was moved aside) are worth nothing; delete them."""
    staged = install.credentials_ready(ctx.paths, ctx.profile, ctx.parsec)
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


def _error(ctx: Context, seen: Observation, decision: Decision,
           err: PepError | None) -> PepError:
    """The error a decision ends the run with."""
    serial = ctx.serial or (seen.installed.serial if seen.installed else "")
    kind = decision.error
    record = seen.record or recovery.Held()
    if kind == recovery.REQUEST_FAILED and err is not None:
        return err
    if kind == recovery.NO_CREDENTIALS:
        enrollment = (record.enrollment or ctx.journal.record.enrollment_id
                      or (ident.load_response(ctx.paths.saved_response) or {})
                      .get("enrollmentID") or "?")
        return ResumeError(
            f"serial {serial} was provisioned on the server (enrollment id {enrollment}) but "
            "FCC did not store the credentials",
            hint=f"this gateway cannot use that identity: first make sure that no other gateway "
                 f"with serial {serial} is on the line, then remove the record of serial "
                 f"{serial} on the pep server and run `pep-agent reprovision`")
    if kind == recovery.UNREACHABLE:
        return ServerUnreachableError(
            f"the server may hold an identity for serial {serial} that FCC stored, but its "
            f"record cannot be read ({record.unreachable})", hint=_holds(ctx))
    if kind == recovery.UNCONFIRMED:
        # Type=notify: a start, not a crash (the unit counts 27 as a success: no restart, no
        # failed unit on a gateway in the field; the next boot asks again).
        ctx.notifier.ready()
        return IdentityUnconfirmedError(
            f"an identity for serial {serial} is installed but no marker says this agent "
            f"installed it, and the server's record cannot be read ({record.unreachable}): "
            "nothing was changed; edge-core keeps running on the installed identity",
            hint="make the pep server reachable and run `pep-agent provision` again to confirm "
                 "it; `pep-agent reprovision` replaces it")
    if kind == recovery.UNFINISHED:
        return ident.unfinished_record(serial, record.watched_s)
    if kind == recovery.DEPLOYED_ELSEWHERE and record.enrollment:
        return ident.deployed_elsewhere(serial, record.enrollment)
    return ident.already_provisioned(serial) if kind == recovery.UNKNOWN_RECORD else (
        err or PepError(f"recovery: {decision.reason}"))


def _holds(ctx: Context) -> str:
    """What the gateway holds while the server's record cannot be read, and what comes next."""
    previous = [aside(p).name for p in Backup(ctx.paths, ctx.profile).held()]
    kept = f"; the previous identity stays aside ({', '.join(previous)})" if previous else ""
    return (f"the credentials stay staged (what FCC stored for the new identity){kept}; "
            "edge-core stays held until the record is read: the next run (systemd restarts "
            "this one, and every boot starts one) asks GET /v3/enrollment-id again, installs "
            "the new identity if the server holds it, or else discards the credentials and "
            "provisions anew; make the server reachable")


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
    started = ctx.clock.monotonic()
    try:
        step.run(ctx)
    except RequestFailed:
        j.step_ended(step.name, "failed", ctx.clock.monotonic() - started)
        raise
    except PepError:
        j.step_ended(step.name, "failed", ctx.clock.monotonic() - started)
        raise
    except OSError as e:
        j.step_ended(step.name, "failed", ctx.clock.monotonic() - started)
        raise fsutil.install_error(f"step {step.name}", e) from None
    except Exception as e:
        j.step_ended(step.name, "failed", ctx.clock.monotonic() - started)
        raise bug(ctx, e, f" in step {step.name}") from None
    j.step_ended(step.name, "done", ctx.clock.monotonic() - started)
    ctx.crash_at(step.name, "after")

