"""The provisioning flow: its steps as data, the runner, and the resume rules.

Side effects: through the context only (services, files, FCC, HTTP, LED, sd_notify, journal).
Read this file top to bottom to know what `pep-agent provision` does.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import signal
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pep_agent import esfs, state
from pep_agent.config import Settings
from pep_agent.errors import (
    BadResponseError,
    ConfigError,
    Exit,
    FccStartError,
    IdentityUnconfirmedError,
    NetworkError,
    NotFoundError,
    PepError,
    ResumeError,
    ServerUnreachableError,
)
from pep_agent.paths import Paths
from pep_agent.profiles import Profile
from pep_agent.state import Journal
from pep_agent.steps import discovery, install
from pep_agent.steps import identity as ident
from pep_agent.steps.fcc import FccSession, check_ip_on_interface, fcc_environment
from pep_agent.system import fsutil, netinfo, proc
from pep_agent.system.clock import Clock
from pep_agent.system.leds import Led, failure_state
from pep_agent.system.lock import RunLock
from pep_agent.system.notify import Notifier
from pep_agent.system.services import ServiceManager

if TYPE_CHECKING:
    from pep_agent.system.http import PepClient

log = logging.getLogger("pep_agent")


@dataclass
class Context:
    """What the steps may touch, injected so that tests can build it from fakes."""

    settings: Settings
    services: ServiceManager
    clock: Clock
    led: Led
    notifier: Notifier
    journal: Journal
    client_factory: Callable[[], PepClient]
    # Filled in as the run goes.
    serial: str = ""
    interface: str = ""
    parsec: bool = False
    fcc: FccSession | None = None
    fcc_address: tuple[str, int] = ("", 0)
    verification_key: str = ""
    # The server's answer, kept in memory too: if saving it fails, the install still has it.
    answer: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def paths(self) -> Paths:
        return self.settings.paths

    @property
    def profile(self) -> Profile:
        return self.settings.platform

    def fields(self, **more: Any) -> dict[str, Any]:
        """Structured journald fields for a log line."""
        base = {"PEP_STEP": self.journal.data.get("step") or "", "PEP_SERIAL": self.serial,
                "PEP_ATTEMPT": self.journal.data.get("attempt", 0)}
        return {**base, **more}

    def say(self, text: str) -> None:
        """A progress line for the log and for `systemctl status` (sd_notify STATUS=)."""
        log.info(text, extra=self.fields())
        self.notifier.status(text)


# --- the steps --------------------------------------------------------------------------------

def preflight(ctx: Context) -> None:
    check_preflight(ctx)
    ctx.verification_key = ident.NO_VERIFICATION_KEY
    if ctx.settings.fss:
        # Here, not at the request: a journald that cannot seal must stop the run before
        # edge-core or the identity are touched. Only after every check: the forced setup
        # replaces the key whose verification key the server holds. The key stays in memory.
        from pep_agent.system.sealing import setup_keys

        ctx.verification_key = setup_keys(ctx.settings.fss_interval, ctx.paths)


def check_preflight(ctx: Context) -> None:
    """preflight's checks, without side effects on the machine (reprovision runs them first)."""
    s = ctx.settings
    if not ctx.paths.sandboxed and os.geteuid() != 0:
        raise ConfigError("pep-agent provision must run as root", hint="use sudo, or --root DIR")
    ctx.client_factory()  # validates the URL, the CA file and TLS settings before any change
    argv = s.fcc_argv()
    exe = argv[0] if "/" in argv[0] else proc.which(argv[0])
    if not exe or not os.path.isfile(exe):
        raise FccStartError(f"the FCC binary {argv[0]} does not exist",
                            hint="install FCC or point --fcc-command at it")
    if not os.access(exe, os.X_OK):
        raise FccStartError(f"the FCC binary {exe} is not executable")
    ctx.parsec = s.parsec == "true" or (s.parsec == "auto" and ctx.paths.parsec_socket.exists())
    ctx.journal.update(parsec=ctx.parsec, profile=s.profile, server=s.server_url)


def discover_serial(ctx: Context) -> None:
    ctx.serial, source = discovery.discover_serial(ctx.settings)
    ctx.journal.update(serial=ctx.serial, serial_source=source)


def wait_network(ctx: Context) -> None:
    deadline = ctx.clock.monotonic() + ctx.settings.network_deadline
    while True:
        # An interface (or the route towards the server) may still be coming up at boot.
        try:
            ctx.interface = discovery.choose_interface(ctx.settings)
            addresses = netinfo.interface_ipv4(ctx.interface)
            problem = NetworkError(f"{ctx.interface} has no IPv4 address "
                                   f"after {ctx.settings.network_deadline:g} s")
        except NetworkError as e:
            addresses, problem = [], e
        if addresses:
            ctx.journal.update(interface=ctx.interface, ip=addresses[0])
            return
        if ctx.clock.monotonic() >= deadline:
            raise problem
        ctx.led.show("waiting")
        ctx.say(f"waiting for the network ({problem.message.split(' after ')[0]})")
        ctx.clock.sleep(1.0)


def stop_edge_core(ctx: Context) -> None:
    # Held, not masked: masking fails for a unit file in /etc (services.py says how).
    ctx.services.hold(ctx.profile.edge_core_unit)


def clear_identity(ctx: Context) -> None:
    moved = install.clear_identity(ctx.paths, ctx.profile)
    ctx.extra["cleared"] = True
    ctx.journal.update(previous_identity=moved)


def start_fcc(ctx: Context) -> None:
    s, paths = ctx.settings, ctx.paths
    staging = install.staging_dir(paths, ctx.profile)
    fsutil.remove(staging)
    fsutil.make_dir(staging, mode=0o700)
    ctx.fcc = FccSession.start(s.fcc_argv(), cwd=staging,
                               env=fcc_environment(ctx.interface, s.entropy_source))
    ctx.journal.update(fcc_pid=ctx.fcc.pid, fcc_started=proc.process_start_time(ctx.fcc.pid))
    deadline = time.monotonic() + s.fcc_start_timeout
    ip, port = ctx.fcc.read_address(deadline=deadline)
    check_ip_on_interface(ip, ctx.interface, netinfo.interface_ipv4(ctx.interface))
    ctx.fcc.probe(ip, port, deadline=deadline)
    ctx.fcc_address = (ip, port)
    ctx.journal.update(fcc_ip=ip, fcc_port=port)


def request_identity(ctx: Context) -> None:
    s = ctx.settings
    key = ctx.verification_key or ident.NO_VERIFICATION_KEY
    client = ctx.client_factory()
    deadline = ctx.clock.monotonic() + s.server_deadline
    attempt = injections = 0
    data: dict[str, Any] | None = None
    elapsed = 0.0
    while data is None:
        attempt += 1
        ip, port = ctx.fcc_address
        query = s.identity_query(ctx.serial, ip, port, key)
        before = ctx.journal.data.get("injection")
        earlier = bool(before)
        # The recovery rule starts here: journalled (fsync'd) before the request leaves.
        ctx.journal.update(attempt=attempt, next_retry_in=None,
                           injection=ident.rebuild_fields(query))
        try:
            started = time.monotonic()
            reply = client.identity(query, budget=deadline - ctx.clock.monotonic())
            elapsed = time.monotonic() - started
            _crash_hook("request-identity", "answered")  # the 200 is here, not yet saved
            ident.check_response(reply, ctx.serial)
            data = reply
            continue
        except PepError as e:
            err = e
        if not err.sent:
            # Refused, no such host, a failed TLS handshake: this request never left, so it
            # cannot have injected FCC and leaves nothing to recover.
            ctx.journal.update(injection=before)
        if err.code == Exit.BAD_RESPONSE:
            # A 200 that is not our identity still means the server injected FCC (case 3).
            try:
                data = recover(ctx, client, f"the server's answer failed the checks "
                                            f"({err.message})")
            except BadResponseError:
                # Not a pep server at all: what it said about our record means nothing either,
                # so nothing is discarded; a rerun asks again.
                raise err from None
            if data is None:
                raise err
        elif err.injection_failed:
            discard(ctx, f"the server answered 500 ({err.message}): it deleted its record")
            if injections >= s.injection_retries:
                raise err
            injections += 1
            ctx.say(f"attempt {attempt}: the server could not inject FCC; restarting FCC "
                    f"({injections}/{s.injection_retries})")
            _stop_fcc(ctx)
            start_fcc(ctx)
        elif err.code == Exit.ALREADY_PROVISIONED:
            if not earlier:
                # No request of ours reached the server before: the record is not from this
                # run, and nothing was injected into our FCC.
                discard(ctx, "409 to our first request: the record is not from this run")
                raise _what_server_holds(ctx, client) from None
            data = recover(ctx, client, "409 after an earlier request of ours")
            if data is None:
                raise ident.unfinished_record(ctx.serial) from None
        elif err.transient and _fcc_ended(ctx):
            # FCC only ends after an exchange: the server injected it (or tried to).
            data = recover(ctx, client, f"FCC ended but no answer came ({err.message})")
            if data is None:
                if injections >= s.injection_retries:
                    raise err
                injections += 1
                start_fcc(ctx)
        elif not err.transient:
            raise err
        else:
            delay = retry_delay(ctx, attempt, err)
            if ctx.clock.monotonic() + delay > deadline:
                raise err
            ctx.journal.update(next_retry_in=round(delay, 2), last_attempt_error=err.message)
            ctx.led.show("waiting")
            ctx.say(f"request-identity: attempt {attempt} failed ({err.message}); "
                    f"next try in {delay:.1f} s")
            ctx.clock.sleep(delay)
    _commit(ctx, data, server_request_s=round(elapsed, 4))


def retry_delay(ctx: Context, attempt: int, err: PepError) -> float:
    """The one place computing the wait before the next request to the server: full jitter
    under an exponential ceiling (`err` is what failed, for a server's own retry advice)."""
    s = ctx.settings
    return ident.retry_delay(attempt, s.retry_base, s.retry_cap, err.retry_after,
                             ctx.clock.uniform)


def _commit(ctx: Context, data: dict[str, Any], **more: Any) -> None:
    """The commit point: the answer is held in memory, then saved; from here on a failing
    journal or state disk is logged and tolerated, so that this answer really is installed."""
    ctx.answer = data
    ctx.journal.best_effort = True
    try:
        ident.save_response(ctx.paths.saved_response, data)
    except OSError as e:
        # The server will not answer twice: install from memory rather than give up.
        log.warning("cannot save the server's answer (%s); installing it directly",
                    e.strerror or type(e).__name__, extra=ctx.fields())
    ctx.journal.update(enrollment_id=data.get("enrollmentID"), response_saved=True,
                       next_retry_in=None, **more)


def _what_server_holds(ctx: Context, client: PepClient) -> PepError:
    """The error for a 409 to our first request, saying what the server's record is."""
    try:
        enrollment = ident.check_enrollment_id(client.enrollment_id(ctx.serial), ctx.serial)
    except NotFoundError:
        log.info("GET /v3/enrollment-id answers 404 for %s: the record was never finished",
                 ctx.serial, extra=ctx.fields())
        return ident.unfinished_record(ctx.serial)
    except PepError as e:
        log.warning("cannot read the server's record of %s (%s)", ctx.serial, e.message,
                    extra=ctx.fields())
        return ident.already_provisioned(ctx.serial)
    return ident.deployed_elsewhere(ctx.serial, enrollment)


def _fcc_ended(ctx: Context) -> bool:
    """FCC exited, or (without Parsec, where storage appears only with an injection) holds
    staged credentials: the server got as far as the injection."""
    if ctx.fcc is None:
        return False
    return ctx.fcc.child.poll() is not None or (
        not ctx.parsec and install.credentials_ready(ctx.paths, ctx.profile, False))


# --- the recovery rule ------------------------------------------------------------------------
#
# From the moment the journal says an injection may have happened (written before every
# identity request), FCC's credentials may be the only copy of an identity the server will
# never hand out again. They are deleted only when the server says it holds no record for the
# serial: a 500 to the identity request, or a 404 from GET /v3/enrollment-id. Without a saved
# answer, in the same run or in a rerun after any kind of ending, `recover` decides.

def recover(ctx: Context, client: PepClient, why: str) -> dict[str, Any] | None:
    """The server's answer for an injection that may have happened, rebuilt from its record;
    None after a 404 (no record: the staged credentials are discarded)."""
    log.warning("an injection may have happened but no answer is saved (%s); asking the "
                "server for its record of serial %s", why, ctx.serial, extra=ctx.fields())
    _wait_for_injected_fcc(ctx)
    enrollment = _server_record(ctx, client)
    if enrollment is None:
        discard(ctx, f"GET /v3/enrollment-id says the server holds no record of {ctx.serial}")
        return None
    if not install.credentials_ready(ctx.paths, ctx.profile, ctx.parsec):
        raise ResumeError(
            f"the server holds a record of serial {ctx.serial} (enrollment id {enrollment}) "
            "but FCC stored no credentials",
            hint=f"remove the record of serial {ctx.serial} on the pep server, then run "
                 "`pep-agent provision` again")
    secure_credentials(ctx, enrollment)
    fields = ctx.journal.data.get("injection") or {}
    log.info("the server holds the record of %s: identity.json is rebuilt from the journalled "
             "request and its enrollment id", ctx.serial, extra=ctx.fields())
    ctx.journal.update(rebuilt_answer=True)
    return ident.rebuild_identity(fields, enrollment, ctx.clock.now())


def _wait_for_injected_fcc(ctx: Context) -> None:
    """Let FCC finish storing what it received, as long as wait-fcc would (with Parsec its exit
    is the only sign that the store is complete)."""
    limit = ctx.settings.fcc_exit_timeout
    if ctx.fcc is not None:
        if proc.wait(ctx.fcc.child, deadline=time.monotonic() + limit) is None:
            log.warning("FCC did not exit within %g s; stopping it", limit, extra=ctx.fields())
        _stop_fcc(ctx)
        return
    leftover = ctx.journal.data.get("fcc_pid")
    if isinstance(leftover, int):
        proc.reap_leftover(leftover, ctx.journal.data.get("fcc_started"), wait_first=limit)
        ctx.journal.update(fcc_pid=None)


def _server_record(ctx: Context, client: PepClient) -> str | None:
    """The enrollment id of the server's record for our serial, None on a 404 (final).

    Unreachable past the server deadline: everything stays as it is and the run ends with a
    code systemd restarts, so that the next run asks again.
    """
    s = ctx.settings
    deadline = ctx.clock.monotonic() + s.server_deadline
    attempt = 0
    while True:
        attempt += 1
        try:
            return ident.check_enrollment_id(client.enrollment_id(ctx.serial), ctx.serial)
        except NotFoundError:
            return None
        except BadResponseError:
            raise  # not a pep server's answer: asking again will not make it one
        except PepError as e:
            delay = retry_delay(ctx, attempt, e)
            if ctx.clock.monotonic() + delay > deadline:
                raise ServerUnreachableError(
                    f"the server may hold an identity for serial {ctx.serial} that FCC stored, "
                    f"but its record cannot be read ({e.message})",
                    hint="the credentials stay staged; the next run (systemd restarts this "
                         "one) asks GET /v3/enrollment-id again: make the server reachable"
                ) from None
            ctx.say(f"recovery: reading the server's record failed ({e.message}); "
                    f"next try in {delay:.1f} s")
            ctx.clock.sleep(delay)


def discard(ctx: Context, reason: str) -> None:
    """The server holds no record: FCC's staged credentials (with Parsec, the store it wrote in
    mcc_config, whose previous content was moved aside) are worth nothing; delete them."""
    staged = install.credentials_ready(ctx.paths, ctx.profile, ctx.parsec)
    log.info("%s; %s", reason, "discarding the staged credentials" if staged
             else "nothing was staged", extra=ctx.fields())
    _stop_fcc(ctx)
    fsutil.remove(install.staging_dir(ctx.paths, ctx.profile))
    if ctx.parsec:
        fsutil.remove(install.targets(ctx.paths, ctx.profile)[0])
    ctx.journal.update(injection=None)


def secure_credentials(ctx: Context, enrollment: str) -> None:
    """Durable before trusted: fsync all FCC stored (an error is an install failure), then
    check it. Incomplete credentials while the server holds the record: exit 22."""
    try:
        install.make_staged_durable(ctx.paths, ctx.profile, ctx.parsec)
    except OSError as e:
        raise fsutil.install_error("making FCC's stored credentials durable", e) from None
    problems = install.credential_problems(ctx.paths, ctx.profile, ctx.parsec)
    if not problems:
        log.info("FCC's stored credentials are complete and on disk", extra=ctx.fields())
        return
    shown = "; ".join(problems[:5]) + ("; ..." if len(problems) > 5 else "")
    raise ResumeError(
        f"the server holds the record of serial {ctx.serial} (enrollment id {enrollment}) but "
        f"FCC's stored credentials are incomplete ({shown}): this identity cannot be installed",
        hint=f"no gateway holds this identity: remove the record of serial {ctx.serial} on the "
             "pep server, then run `pep-agent reprovision`")


def wait_fcc(ctx: Context) -> None:
    if ctx.fcc is not None:
        ctx.fcc.wait_exit(deadline=time.monotonic() + ctx.settings.fcc_exit_timeout)
        ctx.fcc = None
    secure_credentials(ctx, _enrollment(ctx))


def _enrollment(ctx: Context) -> str:
    data = ctx.answer or {}
    return str(data.get("enrollmentID") or ctx.journal.data.get("enrollment_id") or "?")


def install_identity(ctx: Context) -> None:
    data = ctx.answer or ident.load_response(ctx.paths.saved_response)
    if data is None:
        raise ResumeError("the saved server response disappeared before the install")
    ctx.answer = data
    # Again here: a run resumed after a power cut has not synced or checked this store.
    secure_credentials(ctx, _enrollment(ctx))
    install.install(ctx.paths, ctx.profile, ctx.parsec, ident.identity_document(data))


def unmask_edge_core(ctx: Context) -> None:
    ctx.services.release(ctx.profile.edge_core_unit)


def mark_provisioned(ctx: Context) -> None:
    install.make_durable(ctx.paths, ctx.profile)
    # The marker vouches for what is on disk now, checked after the sync.
    secure_credentials(ctx, _enrollment(ctx))
    install.drop_previous(ctx.paths, ctx.profile)
    fsutil.atomic_write(ctx.paths.provisioned_marker, f"{ctx.serial}\n".encode(), mode=0o644)
    fsutil.remove(install.staging_dir(ctx.paths, ctx.profile))
    # The identity is installed; the saved copy is no longer the commit point.
    fsutil.remove(ctx.paths.saved_response)
    ctx.journal.update(state=state.DONE, finished_at=time.time(), injection=None)
    ctx.led.show("success")


def reboot(ctx: Context) -> None:
    if ctx.settings.reboot:
        ctx.notifier.stopping()
        ctx.services.reboot()


@dataclass(frozen=True)
class Step:
    name: str
    run: Callable[[Context], None]
    led: str = "provisioning"


STEPS: tuple[Step, ...] = (
    Step("preflight", preflight),
    Step("discover-serial", discover_serial),
    Step("wait-network", wait_network),
    Step("stop-edge-core", stop_edge_core),
    Step("clear-identity", clear_identity),
    Step("start-fcc", start_fcc),
    Step("request-identity", request_identity),
    Step("wait-fcc", wait_fcc),
    Step("install", install_identity),
    Step("unmask-edge-core", unmask_edge_core),
    Step("mark-provisioned", mark_provisioned, led="success"),
    Step("reboot", reboot, led="success"),
)
STEP_NAMES = tuple(s.name for s in STEPS)


# --- the runner -------------------------------------------------------------------------------

def provision(ctx: Context, *, before: Callable[[Context], None] | None = None) -> str:
    """Run (or resume) the flow. Returns "provisioned" or "already-provisioned".

    `before` runs under the run lock first (reprovision's erase).
    """
    try:
        return _provision(ctx, before)
    except OSError as e:
        # The lock or the journal could not be written (a full or read-only disk): the
        # operator needs exit 18, the directory and the setting that moves it.
        err = state_error(ctx.paths, e)
        _fail(ctx, err)
        raise err from None


def state_error(paths: Paths, e: OSError) -> PepError:
    err = fsutil.install_error(f"cannot write the agent's state in {paths.state_dir}", e)
    err.hint = (f"{err.hint}; or set PEP_STATE_DIR to a writable directory on the "
                "identity's partition" if err.hint else "make it writable, or set "
                "PEP_STATE_DIR to a writable directory on the identity's partition")
    return err


def _provision(ctx: Context, before: Callable[[Context], None] | None) -> str:
    # Created here, its entry fsync'd: a state directory lost in a power cut would lose the
    # journal that says an injection may have happened.
    fsutil.make_dir(ctx.paths.state_dir, mode=0o700)
    with RunLock(ctx.paths.lock):
        # What another run wrote before we held the lock counts, not what we read at start.
        ctx.journal.data = state.load(ctx.journal.path)
        if before is not None:
            ctx.extra["replacing"] = True  # reprovision: the installed identity goes
            before(ctx)
        # READY=1 only once edge-core is held: the unit is ordered Before=edge-core, so
        # systemd keeps edge-core back until then. The hold lives in /run: a run resumed
        # after a power cut takes it again before anything else, before the recovery rule
        # may wait on FCC or the server (and may fail: edge-core must not start on an empty
        # identity and create its own mcc_config meanwhile).
        held = False
        if not ctx.paths.provisioned_marker.exists() and (
                ctx.journal.data.get("injection") or ctx.paths.saved_response.exists()):
            stop_edge_core(ctx)
            held = True
        start = plan(ctx)
        if start is None:
            # Type=notify: a run that ends here (an adopted identity) is a clean start too.
            ctx.notifier.ready()
            return "already-provisioned"
        if start > STEP_NAMES.index("stop-edge-core"):
            if not held:
                stop_edge_core(ctx)
            ctx.notifier.ready()
        try:
            for step in STEPS[start:]:
                _run_step(ctx, step)
                if step.name == "stop-edge-core":
                    ctx.notifier.ready()
        finally:
            _stop_fcc(ctx)
            # Nothing was sent to the server, so nothing in staging is worth keeping. Once an
            # injection may have happened, only `discard` (the server holds no record) deletes.
            if not (ctx.journal.data.get("injection") or ctx.paths.saved_response.exists()
                    or ctx.paths.provisioned_marker.exists()):
                fsutil.remove(install.staging_dir(ctx.paths, ctx.profile))
                if ctx.parsec and ctx.extra.get("cleared"):
                    # FCC writes a Parsec store in place from its start: it holds nothing.
                    fsutil.remove(install.targets(ctx.paths, ctx.profile)[0])
        return "provisioned"


def plan(ctx: Context) -> int | None:
    """Where to start: None if done, the install step after a saved answer, else step 0."""
    j, paths = ctx.journal, ctx.paths
    if paths.provisioned_marker.exists():
        return None
    saved = ident.load_response(paths.saved_response)
    leftover = j.data.get("fcc_pid")
    if saved is not None:
        ctx.serial = str(j.data.get("serial") or saved.get("serialNumber") or "")
        ctx.parsec = bool(j.data.get("parsec"))
        ctx.interface = str(j.data.get("interface") or "")
        if isinstance(leftover, int):
            # The server answered, so FCC has the credentials: let it finish storing them.
            proc.reap_leftover(leftover, j.data.get("fcc_started"),
                               wait_first=min(ctx.settings.fcc_exit_timeout, 30))
        j.update(state=state.RUNNING, pid=os.getpid(), pid_start=state.start_ticks(os.getpid()),
                 resumed=True, error=None, fcc_pid=None)
        if not install.credentials_ready(paths, ctx.profile, ctx.parsec):
            enrollment = j.data.get("enrollment_id") or saved.get("enrollmentID") or "?"
            err = ResumeError(
                f"serial {ctx.serial} was provisioned on the server (enrollment id "
                f"{enrollment}) but FCC did not store the credentials",
                hint=f"remove the record of serial {ctx.serial} on the pep server, then run "
                     "`pep-agent reprovision`")
            _fail(ctx, err)
            raise err
        log.info("resuming after a saved server answer", extra=ctx.fields())
        return STEP_NAMES.index("install")
    if j.data.get("injection"):
        # An earlier run may have been injected and ended without the answer: the recovery rule.
        ctx.serial = str(j.data.get("serial") or "")
        ctx.parsec = bool(j.data.get("parsec"))
        ctx.interface = str(j.data.get("interface") or "")
        j.update(state=state.RUNNING, pid=os.getpid(), pid_start=state.start_ticks(os.getpid()),
                 resumed=True, error=None)
        try:
            data = recover(ctx, ctx.client_factory(), "an earlier run ended before its answer "
                                                      "was saved")
        except PepError as e:
            _fail(ctx, e)
            raise
        if data is not None:
            _commit(ctx, data)
            return STEP_NAMES.index("install")
        log.info("starting over: the server holds no record of %s", ctx.serial,
                 extra=ctx.fields())
    elif not ctx.extra.get("replacing") and _adopt_installed(ctx):
        return None
    if isinstance(leftover, int) and proc.reap_leftover(leftover, j.data.get("fcc_started")):
        log.info("stopped FCC left over from an interrupted run (pid %d)", leftover)
    fsutil.remove(install.staging_dir(paths, ctx.profile))
    j.reset(run_id=uuid.uuid4().hex[:12], serial=None)
    return 0


def _adopt_installed(ctx: Context) -> bool:
    """No marker, but a complete identity for this gateway's serial is installed (the state
    was lost: /var/lib in RAM, a wiped state directory): ask the server before touching it.

    True when the server's deployed record has its enrollment id: the marker is rewritten.
    False when it is an old identity (another or no record): the flow goes on. Unreachable:
    nothing changes and the run ends (edge-core is not held and keeps the identity).
    """
    s = ctx.settings
    mcc, identity_json = install.targets(ctx.paths, ctx.profile)
    try:
        installed = json.loads(identity_json.read_bytes())
    except (OSError, ValueError):
        return False
    serial = installed.get("serialNumber") if isinstance(installed, dict) else None
    enrollment = installed.get("enrollmentID") if isinstance(installed, dict) else None
    if not isinstance(serial, str) or not isinstance(enrollment, str):
        return False
    try:
        own, _ = discovery.discover_serial(s)
    except PepError:
        return False  # the flow reports it at discover-serial
    parsec = s.parsec == "true" or (s.parsec == "auto" and ctx.paths.parsec_socket.exists())
    problems = esfs.check_parsec(mcc) if parsec else esfs.check_pal(mcc)
    if own != serial or problems:
        return False
    ctx.serial, ctx.parsec = own, parsec
    log.info("no marker, but an identity for %s (enrollment id %s) is installed: asking the "
             "server whether it is the one it holds", own, enrollment, extra=ctx.fields())
    client = ctx.client_factory()  # a bad URL or CA file is its own error, not "unreachable"
    try:
        held = ident.check_enrollment_id(client.enrollment_id(own), own)
    except NotFoundError:
        held = None
    except PepError as e:
        err = IdentityUnconfirmedError(
            f"an identity for serial {own} is installed but no marker says this agent "
            f"installed it, and the server's record cannot be read ({e.message}): nothing was "
            "changed; edge-core keeps running on the installed identity",
            hint="make the pep server reachable and run `pep-agent provision` again to confirm "
                 "it; `pep-agent reprovision` replaces it")
        _fail(ctx, err)
        # Type=notify: a start, not a crash (the unit counts 27 as a success: no restart, no
        # failed unit on a gateway in the field; the next boot asks again).
        ctx.notifier.ready()
        raise err from None
    if held != enrollment:
        log.info("the server %s: the installed identity is an old one; provisioning anew",
                 "holds no record of it" if held is None else f"holds enrollment id {held}",
                 extra=ctx.fields())
        return False
    log.info("the server holds this identity (enrollment id %s): the gateway is provisioned; "
             "rewriting the marker", enrollment, extra=ctx.fields())
    install.make_durable(ctx.paths, ctx.profile)
    fsutil.atomic_write(ctx.paths.provisioned_marker, f"{own}\n".encode(), mode=0o644)
    ctx.journal.update(state=state.DONE, serial=own, enrollment_id=enrollment, injection=None,
                       finished_at=time.time(), adopted=True)
    ctx.services.release(ctx.profile.edge_core_unit)
    ctx.led.show("success")
    return True


def _run_step(ctx: Context, step: Step) -> None:
    j = ctx.journal
    _crash_hook(step.name, "before")
    j.step_started(step.name)
    ctx.led.show(step.led)
    ctx.say(step.name)
    started = time.monotonic()
    try:
        step.run(ctx)
    except PepError as e:
        j.step_ended(step.name, "failed", time.monotonic() - started)
        _fail(ctx, e)
        raise
    except OSError as e:
        j.step_ended(step.name, "failed", time.monotonic() - started)
        err = fsutil.install_error(f"step {step.name}", e)
        _fail(ctx, err)
        raise err from None
    except Exception as e:
        # A bug, not an operator's problem: record it, show the failure LED, keep the detail
        # for --debug (exception texts here come from our own code, never from secrets).
        log.debug("unexpected error in %s", step.name, exc_info=True)
        j.step_ended(step.name, "failed", time.monotonic() - started)
        bug = PepError(f"internal error in step {step.name}: {type(e).__name__}",
                       hint="run again with --debug and report the traceback")
        _fail(ctx, bug)
        raise bug from None
    j.step_ended(step.name, "done", time.monotonic() - started)
    _crash_hook(step.name, "after")


def _fail(ctx: Context, err: PepError) -> None:
    # A failure after the marker (the reboot) does not unprovision the gateway.
    failed = state.DONE if ctx.paths.provisioned_marker.exists() else state.FAILED
    try:
        ctx.journal.update(state=failed, finished_at=time.time(), error={
            "code": int(err.code), "name": err.code.name, "message": err.message,
            "hint": err.hint})
    except OSError as e:
        # Still report the failure itself; the journal then says the run was interrupted.
        log.warning("cannot record the failure in %s: %s", ctx.journal.path,
                    e.strerror or type(e).__name__)
    log.error("%s", err.message, extra=ctx.fields(PEP_EXIT_CODE=int(err.code)))
    err.logged = True
    ctx.notifier.status(f"failed: {err.message}")
    if err.code != Exit.UNCONFIRMED:  # the gateway works on its identity: no failure LED
        ctx.led.show(failure_state(err.code))


def _stop_fcc(ctx: Context) -> None:
    if ctx.fcc is not None:
        ctx.fcc.stop()
        ctx.fcc = None


def _crash_hook(step: str, when: str) -> None:
    """Test-only: PEP_TEST_CRASH_AT=<step>:<before|after|answered> sends the agent
    PEP_TEST_CRASH_SIGNAL there (KILL by default: a power cut; TERM: a factory script's kill)."""
    if os.environ.get("PEP_TEST_CRASH_AT") == f"{step}:{when}":
        name = os.environ.get("PEP_TEST_CRASH_SIGNAL", "KILL")
        os.kill(os.getpid(), signal.Signals[f"SIG{name}"])


# --- wiring -----------------------------------------------------------------------------------

def make_led_for(settings: Settings) -> Led:
    """The LED the settings and the profile ask for."""
    from pep_agent.system.leds import make_led

    paths, profile = settings.paths, settings.platform
    return make_led(settings.led_backend or profile.led_backend,
                    leds_dir=settings.led_dir or paths.leds, name=settings.led_name,
                    command=settings.led_command,
                    identity_json=paths.under(profile.identity_json),
                    led_config=settings.led_config)


def make_client(settings: Settings) -> PepClient:
    from pep_agent.system.http import PepClient

    if settings.insecure:
        log.warning("TLS verification of %s is OFF (PEP_INSECURE): anyone on the path can "
                    "impersonate the pep server", settings.server_url)
    return PepClient(settings.server_url, timeout=settings.http_timeout,
                     ca_cert=settings.ca_cert, insecure=settings.insecure)


def build_context(settings: Settings) -> Context:
    """The real context: systemctl or the sandbox, the real clock, LED, notifier and journal."""
    from pep_agent.system.services import make_services

    return Context(settings=settings, services=make_services(settings.paths), clock=Clock(),
                   led=make_led_for(settings), notifier=Notifier(),
                   journal=Journal(settings.paths.journal),
                   client_factory=functools.cache(lambda: make_client(settings)))
