"""How a run ends, in one place: `run` holds the run lock and records every way out but a
return the same way (`end`: the journal, one log line, sd_notify's status, the LED), then calls
the run's on-failure hook (reprovision's restore); `bug` logs an unexpected exception's
traceback, once; `decision_error` words the error a recovery decision ends a run with, saying
what the gateway holds. failures.py records a configuration error with `end_record` too.

Side effects: the state directory and its run lock, the journal, the LED, sd_notify and the
log (a filter on the `pep_agent` logger adds the run's fields while it lasts). `announce`
(the log line, sd_notify, the LED) is verify's too.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from typing import Any

from pep_agent import state
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
from pep_agent.flow import recovery
from pep_agent.flow.context import Context
from pep_agent.flow.recovery import Decision, Observation
from pep_agent.gateway import identity as ident
from pep_agent.gateway import space
from pep_agent.gateway.backup import Backup, aside
from pep_agent.settings.paths import Paths
from pep_agent.system import fsutil
from pep_agent.system.led_signals import failure_state
from pep_agent.system.leds import Led
from pep_agent.system.lock import RunLock
from pep_agent.system.notify import Notifier

log = logging.getLogger("pep_agent")


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
            # Every line the run logs carries its fields: no caller passes them.
            fields = _RunFields(ctx)
            log.addFilter(fields)
            held.callback(log.removeFilter, fields)
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
            raise _ended(ctx, ending, bug(e, "")) from None


class _RunFields(logging.Filter):
    """Adds the run's fields, as they are when a line is logged, to each log record that does
    not bring its own."""

    def __init__(self, ctx: Context) -> None:
        super().__init__()
        self._ctx = ctx

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in self._ctx.fields().items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


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


def end_record(err: Reported, *, provisioned: bool, now: float) -> dict[str, Any]:
    """The journal's part of an ending; every recorder of an ending writes it so."""
    return {"state": outcome(err, provisioned), "finished_at": now, "error": err.as_dict()}


def end(ctx: Context, err: Reported) -> None:
    """The run ended with `err`: journal, log line, sd_notify status, LED."""
    record = end_record(err, provisioned=ctx.paths.provisioned_marker.exists(),
                        now=ctx.clock.now())
    deferred = record["state"] == state.DEFERRED
    try:
        ctx.journal.update(**record, **({"serial": ctx.serial} if deferred else {}))
    except OSError as e:
        # Still report the failure itself; the journal then says the run was interrupted.
        log.warning("cannot record the failure in %s: %s", ctx.journal.path,
                    e.strerror or type(e).__name__)
    announce(err, led=ctx.led, notifier=ctx.notifier, deferred=deferred)


def announce(err: Reported, *, led: Led, notifier: Notifier | None,
             fields: dict[str, Any] | None = None, deferred: bool = False) -> None:
    """An ending told: one log line (the CLI then prints no second), sd_notify's status, the
    LED. verify tells its failure so too."""
    log.log(logging.WARNING if deferred else logging.ERROR, "%s", err.message,
            extra={**(fields or {}), "PEP_EXIT_CODE": int(err.code)})
    err.logged = True
    if notifier is not None:
        notifier.status(f"{state.DEFERRED if deferred else 'failed'}: {err.message}")
    led.show(state.DEFERRED if deferred else failure_state(err.code))


def bug(e: Exception, where: str) -> PepError:
    """An unexpected exception: its traceback to the log at ERROR (the log's redaction applies);
    the error the operator sees."""
    log.error("internal error%s: %s", where, type(e).__name__, exc_info=e)
    return PepError(f"internal error{where}: {type(e).__name__}",
                    hint="report this with the traceback from the log")


def state_error(paths: Paths, e: OSError) -> StateError:
    err = fsutil.os_error(StateError, f"cannot write the agent's state in {paths.state_dir}",
                          e, else_hint="make it writable")
    err.hint += "; or set PEP_STATE_DIR to a writable directory on the identity's partition"
    return err


def decision_error(ctx: Context, seen: Observation, decision: Decision,
           err: PepError | None) -> PepError:
    """The error a decision ends the run with."""
    serial = ctx.serial or (seen.installed.serial if seen.installed else "")
    kind = decision.error
    record = seen.record or recovery.Held()
    if kind == recovery.REQUEST_FAILED and err is not None:
        if record.foreign:
            # The request's own error stands; what kept the credentials is said too.
            err.hint = (f"{err.hint}; the server's record could not be read either "
                        f"({record.unreachable}): the credentials stay staged and the next run "
                        "asks for the record again").lstrip("; ")
        return err
    if kind == recovery.FCC_STORAGE and seen.request is not None:
        return space.fcc_storage_error(ctx.paths, ctx.profile, seen.request.fcc_storage)
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
