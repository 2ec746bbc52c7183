"""The provisioning flow: its steps as data, the runner, and the resume rules.

Side effects: through the context only (services, files, FCC, HTTP, LED, sd_notify, journal).
Read this file top to bottom to know what `pep-agent provision` does.
"""

from __future__ import annotations

import functools
import logging
import os
import signal
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pep_agent import state
from pep_agent.config import Settings
from pep_agent.errors import (
    ConfigError,
    Exit,
    FccStartError,
    NetworkError,
    PepError,
    ResumeError,
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
    ctx.verification_key = ident.NO_VERIFICATION_KEY
    if s.fss:
        # Here, not at the request: a journald that cannot seal must stop the run before
        # edge-core or the identity are touched. The key stays in memory only.
        from pep_agent.system.sealing import setup_keys

        ctx.verification_key = setup_keys(s.fss_interval)


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
    unit = ctx.profile.edge_core_unit
    ctx.services.act("mask", unit)
    ctx.services.act("stop", unit)


def clear_identity(ctx: Context) -> None:
    moved = install.clear_identity(ctx.paths, ctx.profile)
    ctx.extra["cleared"] = True
    ctx.journal.update(previous_identity=moved)


def start_fcc(ctx: Context) -> None:
    s, paths = ctx.settings, ctx.paths
    staging = install.staging_dir(paths, ctx.profile)
    fsutil.remove(staging)
    staging.mkdir(parents=True, mode=0o700)
    ctx.fcc = FccSession.start(s.fcc_argv(), cwd=staging,
                               env=fcc_environment(ctx.interface, s.entropy_source))
    ctx.journal.update(fcc_pid=ctx.fcc.pid, fcc_started=proc.process_start_time(ctx.fcc.pid))
    ip, port = ctx.fcc.read_address(deadline=time.monotonic() + s.fcc_start_timeout)
    check_ip_on_interface(ip, ctx.interface, netinfo.interface_ipv4(ctx.interface))
    ctx.fcc.probe(ip, port)
    ctx.fcc_address = (ip, port)
    ctx.journal.update(fcc_ip=ip, fcc_port=port)


def request_identity(ctx: Context) -> None:
    s = ctx.settings
    key = ctx.verification_key or ident.NO_VERIFICATION_KEY
    client = ctx.client_factory()
    deadline = ctx.clock.monotonic() + s.server_deadline
    attempt = injections = 0
    while True:
        attempt += 1
        ctx.journal.update(attempt=attempt, next_retry_in=None)
        ip, port = ctx.fcc_address
        query = s.identity_query(ctx.serial, ip, port, key)
        try:
            started = time.monotonic()
            data = client.identity(query, budget=deadline - ctx.clock.monotonic())
            elapsed = time.monotonic() - started
            break
        except PepError as e:
            if _injected_anyway(ctx, wait=e.code == Exit.ALREADY_PROVISIONED):
                data, elapsed = _rebuild_lost_answer(ctx, client, query), 0.0
                break
            if e.code == Exit.ALREADY_PROVISIONED:
                raise ident.already_provisioned(ctx.serial) from None
            if e.injection_failed and injections < s.injection_retries:
                injections += 1
                ctx.say(f"attempt {attempt}: the server could not inject FCC; restarting FCC "
                        f"({injections}/{s.injection_retries})")
                _stop_fcc(ctx)
                start_fcc(ctx)
                continue
            if not e.transient:
                raise
            delay = ident.retry_delay(attempt, s.retry_base, s.retry_cap, e.retry_after,
                                      ctx.clock.uniform)
            if ctx.clock.monotonic() + delay > deadline:
                raise
            ctx.journal.update(next_retry_in=round(delay, 2), last_attempt_error=e.message)
            ctx.led.show("waiting")
            ctx.say(f"request-identity: attempt {attempt} failed ({e.message}); "
                    f"next try in {delay:.1f} s")
            ctx.clock.sleep(delay)
    enrollment = ident.check_response(data, ctx.serial)
    ctx.answer = data
    try:
        ident.save_response(ctx.paths.saved_response, data)
    except OSError as e:
        # The server will not answer twice: install from memory rather than give up.
        log.warning("cannot save the server's answer (%s); installing it directly",
                    e.strerror or type(e).__name__, extra=ctx.fields())
    ctx.journal.update(enrollment_id=enrollment, response_saved=True, next_retry_in=None,
                       server_request_s=round(elapsed, 4))


def _injected_anyway(ctx: Context, *, wait: bool) -> bool:
    """FCC took the credentials and exited 0, although the server's answer never arrived.

    That happens when the connection drops or times out after the server injected FCC: the
    server then holds a record for the serial and would answer any retry with 409.
    """
    if ctx.fcc is None:
        return False
    # FCC stores the credentials before it answers the factory tool: once they are staged,
    # the injection happened and FCC is about to exit, so wait for it rather than asking the
    # server again (which would answer 409). With Parsec, storage exists from FCC's start and
    # says nothing, so only FCC's exit tells.
    if not ctx.parsec and install.credentials_ready(ctx.paths, ctx.profile, False):
        wait = True
    code = proc.wait(ctx.fcc.child, deadline=time.monotonic() + (5.0 if wait else 0.0))
    return code == 0 and install.credentials_ready(ctx.paths, ctx.profile, ctx.parsec)


def _rebuild_lost_answer(ctx: Context, client: PepClient, query: dict[str, str]) -> dict[str, Any]:
    """The identity the server would have sent: our query plus its record's enrollment id."""
    log.warning("the server's answer was lost after it injected FCC; rebuilding identity.json "
                "from the server's record", extra=ctx.fields())
    # From here on the credentials in staging are the only copy: keep them whatever happens.
    ctx.answer = {}
    s = ctx.settings
    deadline = ctx.clock.monotonic() + s.server_deadline
    for attempt in range(1, 11):
        try:
            enrollment = client.enrollment_id(ctx.serial)
            break
        except PepError as e:
            delay = ctx.clock.uniform(0, ident.backoff_ceiling(attempt, s.retry_base, s.retry_cap))
            if attempt == 10 or ctx.clock.monotonic() + delay > deadline:
                raise ResumeError(
                    f"the server injected FCC for serial {ctx.serial} but its answer was lost, "
                    f"and its record cannot be read ({e.message})",
                    hint="the credentials stay staged; run `pep-agent provision` again once "
                         "the server answers GET /v3/enrollment-id") from None
            ctx.clock.sleep(delay)
    ctx.journal.update(rebuilt_answer=True)
    return ident.rebuild_identity(query, enrollment, ctx.clock.now())


def wait_fcc(ctx: Context) -> None:
    if ctx.fcc is not None:
        ctx.fcc.wait_exit(deadline=time.monotonic() + ctx.settings.fcc_exit_timeout)
        ctx.fcc = None


def install_identity(ctx: Context) -> None:
    data = ctx.answer or ident.load_response(ctx.paths.saved_response)
    if data is None:
        raise ResumeError("the saved server response disappeared before the install")
    install.install(ctx.paths, ctx.profile, ctx.parsec, ident.identity_document(data))


def unmask_edge_core(ctx: Context) -> None:
    ctx.services.act("unmask", ctx.profile.edge_core_unit)


def mark_provisioned(ctx: Context) -> None:
    install.drop_previous(ctx.paths, ctx.profile)
    fsutil.atomic_write(ctx.paths.provisioned_marker, f"{ctx.serial}\n".encode(), mode=0o644)
    fsutil.remove(install.staging_dir(ctx.paths, ctx.profile))
    # The identity is installed; the saved copy is no longer the commit point.
    fsutil.remove(ctx.paths.saved_response)
    ctx.journal.update(state=state.DONE, finished_at=time.time())
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
        # operator needs exit 18 and its hint, not a traceback.
        err = fsutil.install_error("writing the agent's state", e)
        _fail(ctx, err)
        raise err from None


def _provision(ctx: Context, before: Callable[[Context], None] | None) -> str:
    with RunLock(ctx.paths.lock):
        # What another run wrote before we held the lock counts, not what we read at start.
        ctx.journal.data = state.load(ctx.journal.path)
        if before is not None:
            before(ctx)
        start = plan(ctx)
        if start is None:
            return "already-provisioned"
        # READY=1 only once edge-core is masked: the unit is ordered Before=edge-core, so
        # systemd holds edge-core back until then.
        if start > STEP_NAMES.index("stop-edge-core"):
            ctx.notifier.ready()
        try:
            for step in STEPS[start:]:
                _run_step(ctx, step)
                if step.name == "stop-edge-core":
                    ctx.notifier.ready()
        finally:
            _stop_fcc(ctx)
            # Before the server answered, nothing in staging is worth keeping: leave no trace.
            if ctx.answer is None and not ctx.paths.saved_response.exists():
                fsutil.remove(install.staging_dir(ctx.paths, ctx.profile))
                if ctx.parsec and ctx.extra.get("cleared"):
                    # FCC writes a Parsec store in place: without an answer it is partial.
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
    if isinstance(leftover, int) and proc.reap_leftover(leftover, j.data.get("fcc_started")):
        log.info("stopped FCC left over from an interrupted run (pid %d)", leftover)
    fsutil.remove(install.staging_dir(paths, ctx.profile))
    j.reset(run_id=uuid.uuid4().hex[:12], serial=None)
    return 0


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
    ctx.led.show(failure_state(err.code))


def _stop_fcc(ctx: Context) -> None:
    if ctx.fcc is not None:
        ctx.fcc.stop()
        ctx.fcc = None


def _crash_hook(step: str, when: str) -> None:
    """Test-only: PEP_TEST_CRASH_AT=<step>:<before|after> kills the agent there (a power cut)."""
    if os.environ.get("PEP_TEST_CRASH_AT") == f"{step}:{when}":
        os.kill(os.getpid(), signal.SIGKILL)


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
