"""The provisioning flow's steps, in order: read this file top to bottom to know what
`pep-agent provision` does. The runner (runner.py) runs them; the recovery rule
(recovery.py) decides where a run starts, what follows a failed identity request and what
happens to credentials; the runner acts on it.

Side effects: through the context (services, FCC launcher, network probe, HTTP client, clock,
LED, sd_notify, journal); the identity's files and FCC's staging directory (through
gateway/install.py and the file funnel); the journald sealing keys (preflight, with PEP_FSS);
read-only looks at the routing table (choosing the interface) and the process table (FCC's
start time, to recognise its pid later).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pep_agent import state
from pep_agent.errors import FccExitedError, FccStartError, NetworkError, PepError, ResumeError
from pep_agent.flow import request
from pep_agent.flow.context import Context
from pep_agent.gateway import discovery, install, space
from pep_agent.gateway import identity as ident
from pep_agent.gateway.backup import Backup
from pep_agent.gateway.fcc import check_ip_on_interface, fcc_environment
from pep_agent.system import fsutil, proc
from pep_agent.system.sealing import setup_keys


def check_preflight(ctx: Context) -> None:
    """preflight's finding: whether Parsec holds the keys, once FCC, the server's settings and
    the free space are checked."""
    s = ctx.settings
    # Root was checked by the command line before the context existed.
    ctx.client_factory()  # validates the URL, the CA file and TLS settings before any change
    argv = s.fcc_argv()
    exe = argv[0] if "/" in argv[0] else proc.which(argv[0])
    if not exe or not os.path.isfile(exe):
        raise FccStartError(f"the FCC binary {argv[0]} does not exist",
                            hint="install FCC or point --fcc-command at it")
    if not os.access(exe, os.X_OK):
        raise FccStartError(f"the FCC binary {exe} is not executable")
    space.check_space(ctx.paths, ctx.profile)
    ctx.parsec = install.uses_parsec(ctx.paths, s.parsec)


def preflight(ctx: Context) -> None:
    s = ctx.settings
    ctx.journal.update(parsec=ctx.parsec, profile=s.profile.name, server=s.server_url)
    ctx.verification_key = ident.NO_VERIFICATION_KEY
    if s.fss:
        # Here, not at the request: a journald that cannot seal must stop the run before
        # edge-core or the identity are touched. Only after every check: the forced setup
        # replaces the key whose verification key the server holds. The key stays in memory.
        ctx.verification_key = setup_keys(s.fss_interval, ctx.paths)


def find_serial(ctx: Context) -> None:
    ctx.serial, ctx.serial_source = discovery.discover_serial(ctx.settings)


def discover_serial(ctx: Context) -> None:
    ctx.journal.update(serial=ctx.serial, serial_source=ctx.serial_source)


def find_network(ctx: Context) -> None:
    """The interface FCC will bind and its first IPv4 address, waiting for the network to
    come up (an interface, or the route towards the server, may still be missing at boot)."""
    deadline = ctx.clock.monotonic() + ctx.settings.network_deadline
    while True:
        try:
            interface = discovery.choose_interface(ctx.settings)
            addresses = ctx.probe_network(interface)
            problem = NetworkError(f"{interface} has no IPv4 address "
                                   f"after {ctx.settings.network_deadline:g} s")
        except NetworkError as e:
            addresses, problem = [], e
        if addresses:
            ctx.interface, ctx.ip = interface, addresses[0]
            return
        if ctx.clock.monotonic() >= deadline:
            raise problem
        ctx.led.show("waiting")
        ctx.say(f"waiting for the network ({problem.message.split(' after ')[0]})")
        ctx.clock.sleep(1.0)


def wait_network(ctx: Context) -> None:
    ctx.journal.update(interface=ctx.interface, ip=ctx.ip)


def stop_edge_core(ctx: Context) -> None:
    # Held, not masked: masking fails for a unit file in /etc (services.py says how).
    ctx.services.hold(ctx.profile.edge_core_unit)


def clear_identity(ctx: Context) -> None:
    moved = install.clear_identity(ctx.paths, ctx.profile)
    ctx.cleared = True
    ctx.journal.update(previous_identity=moved)


# Starts of FCC per start-fcc step when it exits before it is used (the real FCC, under load,
# now and then exits 1 just after printing its port).
FCC_STARTS = 3


def start_fcc(ctx: Context) -> None:
    for start in range(1, FCC_STARTS + 1):
        try:
            _start_fcc_once(ctx)
            return
        except FccExitedError as err:
            ctx.stop_fcc()
            if start == FCC_STARTS:
                raise
            # Nothing was sent to it: no injection can have happened.
            ctx.say(f"{err.message}; starting FCC again ({start}/{FCC_STARTS - 1})")


def _start_fcc_once(ctx: Context) -> None:
    s, paths = ctx.settings, ctx.paths
    staging = install.staging_dir(paths, ctx.profile)
    fsutil.remove(staging)
    install.protect_storage(paths, ctx.profile)
    fsutil.make_dir(staging, mode=0o700)
    ctx.fcc = ctx.launch_fcc(s.fcc_argv(), staging,
                             fcc_environment(ctx.interface, s.entropy_source))
    ctx.journal.update(fcc_pid=ctx.fcc.pid, fcc_started=proc.process_start_time(ctx.fcc.pid))
    deadline = ctx.clock.monotonic() + s.fcc_start_timeout
    ip, port = ctx.fcc.read_address(deadline=deadline)
    check_ip_on_interface(ip, ctx.interface, ctx.probe_network(ctx.interface))
    ctx.fcc.probe(ip, port, deadline=deadline)
    ctx.fcc_address = (ip, port)
    ctx.journal.update(fcc_ip=ip, fcc_port=port)


def fcc_ended(ctx: Context) -> bool:
    """This run's FCC exited, or (without Parsec, where storage appears only with an
    injection) holds staged credentials: the server got as far as the injection."""
    return ctx.fcc is not None and (ctx.fcc.child.poll() is not None or (
        not ctx.parsec and install.credentials_ready(ctx.paths, ctx.profile, False)))


class RequestFailed(Exception):
    """The identity request failed: the runner asks the recovery rule what follows."""

    def __init__(self, error: PepError, earlier: bool, fcc_storage: str | None = None) -> None:
        super().__init__(error.message)
        self.error, self.earlier = error, earlier
        self.fcc_storage = fcc_storage  # the storage error FCC printed, if any


def request_identity(ctx: Context) -> None:
    notes: dict[str, Any] = {}
    try:
        data = request.ask_identity(ctx, ctx.client_factory(),
                                    deadline=ctx.clock.monotonic() + ctx.settings.server_deadline,
                                    notes=notes, stop_retrying=lambda: fcc_ended(ctx))
    except PepError as err:
        raise RequestFailed(err, earlier=bool(notes.get("earlier")),
                            fcc_storage=_storage_failure(ctx, err)) from None
    request.commit(ctx, data, server_request_s=notes.get("server_request_s", 0.0))


def _storage_failure(ctx: Context, err: PepError) -> str | None:
    """The storage error FCC printed, read now (the recovery rule may stop FCC). After a 500
    the server deleted its record, so FCC holds nothing worth keeping: it is stopped if it has
    not exited, so that all of its output is read (a busy machine can deliver its last lines
    after the grace, and the error says why the injection failed)."""
    fcc = ctx.fcc
    if fcc is None:
        return None
    found = fcc.storage_failure()
    if found is None and err.injection_failed:
        ctx.stop_fcc()
        found = fcc.storage_error
    return found


def wait_fcc(ctx: Context) -> None:
    if ctx.fcc is not None:
        ctx.fcc.wait_exit(deadline=ctx.clock.monotonic() + ctx.settings.fcc_exit_timeout)
        ctx.fcc = None
    _secure(ctx)
    ctx.say("FCC's stored credentials are complete and on disk")


def install_identity(ctx: Context) -> None:
    data = ctx.answer or ident.load_response(ctx.paths.saved_response)
    if data is None:
        raise ResumeError("the saved server response disappeared before the install")
    ctx.answer = data
    # Again here: a run resumed after a power cut has not synced or checked this store.
    _secure(ctx)
    install.install(ctx.paths, ctx.profile, ctx.parsec, ident.identity_json(data))


def release_edge_core(ctx: Context) -> None:
    ctx.services.release(ctx.profile.edge_core_unit)


def mark_provisioned(ctx: Context) -> None:
    install.make_durable(ctx.paths, ctx.profile)
    # The marker vouches for what is on disk now, checked after the sync.
    _secure(ctx)
    # Everything aside (identity, markers, Parsec state) goes before the marker: once it is
    # written no run follows that would.
    Backup(ctx.paths, ctx.profile).discard()
    fsutil.atomic_write(ctx.paths.provisioned_marker, f"{ctx.serial}\n".encode(), mode=0o644)
    fsutil.remove(install.staging_dir(ctx.paths, ctx.profile))
    # The identity is installed; the saved copy is no longer the commit point.
    fsutil.remove(ctx.paths.saved_response)
    ctx.journal.update(state=state.DONE, finished_at=ctx.clock.now(), injection=None, error=None)
    ctx.led.show("success")


def reboot(ctx: Context) -> None:
    if ctx.reboot_at_end:
        ctx.notifier.stopping()
        ctx.services.reboot()


def _secure(ctx: Context) -> None:
    data = ctx.answer or {}
    enrollment = str(data.get("enrollmentID") or ctx.journal.record.enrollment_id or "?")
    install.secure_credentials(ctx.paths, ctx.profile, ctx.parsec, ctx.serial, enrollment)


@dataclass(frozen=True)
class Step:
    name: str  # in the journal, `status` and crash points: stable across versions
    run: Callable[[Context], None]
    led: str = "provisioning"
    # What the step finds out, into the context, changing nothing; the runner runs it just
    # before `run`, unless reprovision ran every step's check before anything moved.
    check: Callable[[Context], None] | None = None


STEPS: tuple[Step, ...] = (
    Step(state.PREFLIGHT, preflight, check=check_preflight),
    Step(state.DISCOVER_SERIAL, discover_serial, check=find_serial),
    Step(state.WAIT_NETWORK, wait_network, check=find_network),
    Step(state.STOP_EDGE_CORE, stop_edge_core),
    Step(state.CLEAR_IDENTITY, clear_identity),
    Step(state.START_FCC, start_fcc),
    Step(state.REQUEST_IDENTITY, request_identity),
    Step(state.WAIT_FCC, wait_fcc),
    Step(state.INSTALL, install_identity),
    Step(state.RELEASE_EDGE_CORE, release_edge_core),
    Step(state.MARK_PROVISIONED, mark_provisioned, led="success"),
    Step(state.REBOOT, reboot, led="success"),
)
STEP_NAMES = tuple(s.name for s in STEPS)
