"""The runner: under the run lock, observe the gateway, let the recovery rule decide where to
start, and run the steps from there, journalling each.

Whatever goes wrong, the run ends the same way: a failed journal, the failure LED, one line
for the operator; an unexpected exception (a bug) also logs its traceback at ERROR.

Side effects: the state directory and its run lock, the journal, the LED, sd_notify and the
log; the steps' own through the context.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from pep_agent import state
from pep_agent.errors import AbortedError, PepError, Reported, StateError
from pep_agent.exit_codes import Exit
from pep_agent.flow import recovery
from pep_agent.flow.context import Context
from pep_agent.flow.steps import STEP_NAMES, STEPS, Step, stop_edge_core
from pep_agent.paths import Paths
from pep_agent.system import fsutil
from pep_agent.system.led_signals import failure_state
from pep_agent.system.lock import RunLock

log = logging.getLogger("pep_agent")


def provision(ctx: Context) -> str:
    """Run (or resume) the flow. Returns "provisioned" or "already-provisioned"."""
    with locked(ctx), recorded(ctx):
        return run_plan(ctx)


@contextlib.contextmanager
def locked(ctx: Context) -> Iterator[None]:
    """The run lock held, the journal as the last run left it. A failure to write the state
    and any bug inside end the run as failed (PepErrors are for `recorded` to record)."""
    try:
        # Created here, its entry fsync'd: a state directory lost in a power cut would lose
        # the journal that says an injection may have happened.
        fsutil.make_dir(ctx.paths.state_dir, mode=0o700)
        with RunLock(ctx.paths.lock):
            # What another run wrote before we held the lock counts, not what we read at start.
            ctx.journal.data = state.load(ctx.journal.path)
            yield
    except (PepError, AbortedError):
        raise
    except OSError as e:
        # The lock or the journal could not be written (a full or read-only disk): the
        # operator needs the directory and the setting that moves it.
        err = state_error(ctx.paths, e)
        fail(ctx, err)
        raise err from None
    except Exception as e:
        raise bug(ctx, e, "") from None


@contextlib.contextmanager
def recorded(ctx: Context) -> Iterator[None]:
    """A PepError or a signal inside ends the run as failed (journal, LED, log), once."""
    try:
        yield
    except (PepError, AbortedError) as e:
        if not e.logged:
            fail(ctx, e)
        raise


def run_plan(ctx: Context) -> str:
    """Observe, decide where to start, run the steps from there."""
    seen = recovery.observe(ctx)
    # READY=1 only once edge-core is held: the unit is ordered Before=edge-core, so systemd
    # keeps edge-core back until then. The hold lives in /run: a run resumed after a power
    # cut takes it again before anything else, before the recovery rule may wait on FCC or
    # the server (and may fail: edge-core must not start on an empty identity and create its
    # own mcc_config meanwhile).
    if seen.hold_edge_core:
        stop_edge_core(ctx)
        ctx.notifier.ready()
    start = recovery.plan(ctx, seen)
    if start is None:
        # Type=notify: a run that ends here (an adopted identity) is a clean start too.
        ctx.notifier.ready()
        return "already-provisioned"
    try:
        for step in STEPS[STEP_NAMES.index(start):]:
            _run_step(ctx, step)
            if step.name == "stop-edge-core":
                ctx.notifier.ready()
    finally:
        ctx.stop_fcc()
        recovery.after_run(ctx)
    return "provisioned"


def _run_step(ctx: Context, step: Step) -> None:
    j = ctx.journal
    ctx.crash_at(step.name, "before")
    j.step_started(step.name)
    ctx.led.show(step.led)
    ctx.say(step.name)
    started = ctx.clock.monotonic()
    try:
        step.run(ctx)
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


def bug(ctx: Context, e: Exception, where: str) -> PepError:
    """An unexpected exception: its traceback to the log at ERROR (the log's redaction applies),
    the run recorded as failed; the error the operator sees."""
    log.error("internal error%s: %s", where, type(e).__name__, exc_info=e, extra=ctx.fields())
    err = PepError(f"internal error{where}: {type(e).__name__}",
                   hint="report this with the traceback from the log")
    fail(ctx, err)
    return err


def fail(ctx: Context, err: Reported) -> None:
    """The run ended with `err`: journal, log line, sd_notify status, LED."""
    # A failure after the marker (the reboot) does not unprovision the gateway. An identity
    # the server could not confirm is no failure either: the gateway works on it, deferred.
    deferred = err.code == Exit.UNCONFIRMED
    ended = (state.DONE if ctx.paths.provisioned_marker.exists()
             else state.DEFERRED if deferred else state.FAILED)
    fields = {"serial": ctx.serial} if deferred else {}
    try:
        ctx.journal.update(state=ended, finished_at=ctx.clock.now(), error=err.as_dict(),
                           **fields)
    except OSError as e:
        # Still report the failure itself; the journal then says the run was interrupted.
        log.warning("cannot record the failure in %s: %s", ctx.journal.path,
                    e.strerror or type(e).__name__)
    log.log(logging.WARNING if deferred else logging.ERROR, "%s", err.message,
            extra=ctx.fields(PEP_EXIT_CODE=int(err.code)))
    err.logged = True
    ctx.notifier.status(f"{state.DEFERRED if deferred else 'failed'}: {err.message}")
    ctx.led.show(state.DEFERRED if deferred else failure_state(err.code))


def state_error(paths: Paths, e: OSError) -> StateError:
    err = fsutil.os_error(StateError, f"cannot write the agent's state in {paths.state_dir}",
                          e, else_hint="make it writable")
    err.hint += "; or set PEP_STATE_DIR to a writable directory on the identity's partition"
    return err
