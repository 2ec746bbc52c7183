"""The recovery rule: observe what is on disk, name the phase, decide once.

From the moment the journal says an injection may have happened (written before every
identity request), FCC's credentials may be the only copy of an identity the server will
never hand out again. They are deleted only when the server says it holds no record for the
serial: a 500 to the identity request, or a 404 from GET /v3/enrollment-id. This module is the
only place that asks "may an injection have happened?" and the only one that decides whether
credentials are kept, recovered, discarded or restored.

Side effects: reads the state directory and the installed identity; through the context, asks
the server for its record, waits for (or ends) FCC, deletes discarded credentials, rewrites
an adopted identity's marker (discarding what is aside), writes the journal.
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pep_agent import esfs, state
from pep_agent.errors import (
    BadResponseError,
    IdentityUnconfirmedError,
    NotFoundError,
    PepError,
    ResumeError,
)
from pep_agent.exit_codes import Exit
from pep_agent.flow import request
from pep_agent.flow.context import Context
from pep_agent.gateway import discovery, install
from pep_agent.gateway import identity as ident
from pep_agent.gateway.backup import Backup
from pep_agent.system import fsutil, proc

if TYPE_CHECKING:
    from pep_agent.system.http import PepClient

log = logging.getLogger("pep_agent")


def injection_possible(ctx: Context) -> bool:
    """A request of ours may have reached the server (which injects FCC before it answers):
    the journal says so (written before each request), or its answer is saved."""
    return bool(ctx.journal.data.get("injection")) or ctx.paths.saved_response.exists()


@dataclass(frozen=True)
class Observed:
    """What the gateway holds at the start of a run."""
    marker: bool
    answered: bool  # the server's answer is saved
    injection: bool
    installed: tuple[str, str] | None  # identity.json's (serial, enrollment id)

    @property
    def phase(self) -> str:
        if self.marker:
            return "provisioned"
        if self.answered:
            return "answered"
        if self.injection:
            return "injection-pending"
        return "installed-without-marker" if self.installed else "new"

    @property
    def hold_edge_core(self) -> bool:
        """edge-core must not start on an empty identity while the recovery rule works."""
        return self.phase in ("answered", "injection-pending")


def observe(ctx: Context) -> Observed:
    """The gateway's state from disk (the journal as loaded under the run lock)."""
    paths = ctx.paths
    try:
        doc = json.loads(paths.under(ctx.profile.identity_json).read_bytes())
        installed: tuple[str, str] | None = (doc["serialNumber"], doc["enrollmentID"])
    except (OSError, ValueError, TypeError, KeyError):
        installed = None
    if installed and not all(isinstance(v, str) for v in installed):
        installed = None
    marker = paths.provisioned_marker.exists()
    return Observed(marker=marker, injection=bool(ctx.journal.data.get("injection")),
                    answered=paths.saved_response.exists(), installed=installed)


def plan(ctx: Context, seen: Observed) -> str | None:
    """The step to start from: None when done, "install" after an answer (saved or
    recovered), else "preflight" (with any leftover of an earlier run cleared)."""
    j, paths = ctx.journal, ctx.paths
    if seen.marker:
        return None
    leftover = j.data.get("fcc_pid")
    # Read here, after edge-core is held: an unreadable answer is an error of its own.
    saved = ident.load_response(paths.saved_response) if seen.answered else None
    if seen.hold_edge_core:  # resumed: the context comes back from the journal
        ctx.serial = str(j.data.get("serial") or (saved or {}).get("serialNumber") or "")
        ctx.parsec = bool(j.data.get("parsec"))
        ctx.interface = str(j.data.get("interface") or "")
        j.update(state=state.RUNNING, resumed=True, error=None, **state.own_pid())
    if saved is not None:
        if isinstance(leftover, int):
            # The server answered, so FCC has the credentials: let it finish storing them.
            proc.reap_leftover(leftover, j.data.get("fcc_started"),
                               wait_first=min(ctx.settings.fcc_exit_timeout, 30))
            j.update(fcc_pid=None)
        if not install.credentials_ready(paths, ctx.profile, ctx.parsec):
            enrollment = j.data.get("enrollment_id") or saved.get("enrollmentID") or "?"
            raise ResumeError(
                f"serial {ctx.serial} was provisioned on the server (enrollment id "
                f"{enrollment}) but FCC did not store the credentials",
                hint=f"remove the record of serial {ctx.serial} on the pep server, then run "
                     "`pep-agent reprovision`")
        log.info("resuming after a saved server answer", extra=ctx.fields())
        return "install"
    if seen.injection:
        data = recover(ctx, ctx.client_factory(), "an earlier run ended before its answer")
        if data is not None:
            request.commit(ctx, data)
            return "install"
        log.info("starting over: the server holds no record of %s", ctx.serial, extra=ctx.fields())
    elif not ctx.replacing and seen.installed and adopt_installed(ctx, *seen.installed):
        return None
    if isinstance(leftover, int) and proc.reap_leftover(leftover, j.data.get("fcc_started")):
        log.info("stopped FCC left over from an interrupted run (pid %d)", leftover)
    fsutil.remove(install.staging_dir(paths, ctx.profile))
    j.reset(run_id=uuid.uuid4().hex[:12], serial=None)
    return "preflight"


def adopt_installed(ctx: Context, serial: str, enrollment: str) -> bool:
    """No marker, but a complete identity is installed (the state was lost: /var/lib in RAM, a
    wiped state directory): True, with the marker rewritten, when it is this gateway's and the
    server's record holds its enrollment id; False for an old identity (the flow goes on).
    Server unreachable: nothing changes, edge-core keeps the identity (exit 27)."""
    s = ctx.settings
    try:
        own, _ = discovery.discover_serial(s)
    except PepError:
        return False  # the flow reports it at discover-serial
    parsec = install.uses_parsec(ctx.paths, s.parsec)
    mcc, _ = install.targets(ctx.paths, ctx.profile)
    if own != serial or (esfs.check_parsec(mcc) if parsec else esfs.check_pal(mcc)):
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
        # Type=notify: a start, not a crash (the unit counts 27 as a success: no restart, no
        # failed unit on a gateway in the field; the next boot asks again).
        ctx.notifier.ready()
        raise IdentityUnconfirmedError(
            f"an identity for serial {own} is installed but no marker says this agent "
            f"installed it, and the server's record cannot be read ({e.message}): nothing was "
            "changed; edge-core keeps running on the installed identity",
            hint="make the pep server reachable and run `pep-agent provision` again to confirm "
                 "it; `pep-agent reprovision` replaces it") from None
    if held != enrollment:
        log.info("the server %s: the installed identity is an old one; provisioning anew",
                 "holds no record of it" if held is None else f"holds enrollment id {held}",
                 extra=ctx.fields())
        return False
    log.info("the server holds this identity (enrollment id %s): the gateway is provisioned; "
             "rewriting the marker", enrollment, extra=ctx.fields())
    install.make_durable(ctx.paths, ctx.profile)
    Backup(ctx.paths, ctx.profile).discard()  # as mark-provisioned does
    fsutil.atomic_write(ctx.paths.provisioned_marker, f"{own}\n".encode(), mode=0o644)
    # error=None: a deferral (exit 27) recorded by an earlier run is cleared by this confirmation.
    ctx.journal.update(state=state.DONE, serial=own, enrollment_id=enrollment, injection=None,
                       finished_at=ctx.clock.now(), adopted=True, error=None)
    ctx.services.release(ctx.profile.edge_core_unit)
    ctx.led.show("success")
    return True


def fcc_ended(ctx: Context) -> bool:
    """FCC exited, or (without Parsec, where storage appears only with an injection) holds
    staged credentials: the server got as far as the injection."""
    return ctx.fcc is not None and (ctx.fcc.child.poll() is not None or (
        not ctx.parsec and install.credentials_ready(ctx.paths, ctx.profile, False)))


def after_failed_request(ctx: Context, client: PepClient, err: PepError, *,
                         earlier: bool) -> dict[str, Any] | None:
    """What a failed identity request leaves: the answer recovered from the server's record,
    None when the server holds no record (FCC may be restarted and asked again), or raises.

    `earlier`: an injection was journalled before the failed request.
    """
    if err.code == Exit.BAD_RESPONSE:
        # A 200 that is not our identity still means the server injected FCC.
        try:
            data = recover(ctx, client, f"the server's answer failed the checks "
                                        f"({err.message})")
        except BadResponseError:
            # Not a pep server at all: what it said about our record means nothing either,
            # so nothing is discarded; a rerun asks again.
            raise err from None
        if data is None:
            raise err
        return data
    if err.injection_failed:
        discard(ctx, f"the server answered 500 ({err.message}): it deleted its record")
        return None
    if err.code == Exit.ALREADY_PROVISIONED:
        if not earlier:
            # No request of ours reached the server before: the record is not from this run,
            # and nothing was injected into our FCC.
            discard(ctx, "409 to our first request: the record is not from this run")
            raise request.what_server_holds(ctx, client)
        data = recover(ctx, client, "409 after an earlier request of ours")
        if data is None:
            raise ident.unfinished_record(ctx.serial)
        return data
    if err.transient and fcc_ended(ctx):
        # FCC only ends after an exchange: the server injected it (or tried to).
        return recover(ctx, client, f"FCC ended but no answer came ({err.message})")
    raise err


def recover(ctx: Context, client: PepClient, why: str) -> dict[str, Any] | None:
    """The server's answer for an injection that may have happened, rebuilt from its record;
    None after a 404 (no record: the staged credentials are discarded)."""
    log.warning("an injection may have happened but no answer is saved (%s); FCC's "
                "credentials are kept while the server is asked for its record of serial %s",
                why, ctx.serial, extra=ctx.fields())
    _wait_for_injected_fcc(ctx)
    enrollment = request.server_record(ctx, client)
    if enrollment is None:
        discard(ctx, f"GET /v3/enrollment-id says the server holds no record of {ctx.serial}")
        return None
    if not install.credentials_ready(ctx.paths, ctx.profile, ctx.parsec):
        raise ResumeError(
            f"the server holds a record of serial {ctx.serial} (enrollment id {enrollment}) "
            "but FCC stored no credentials",
            hint=f"remove the record of serial {ctx.serial} on the pep server, then run "
                 "`pep-agent provision` again")
    install.secure_credentials(ctx.paths, ctx.profile, ctx.parsec, ctx.serial, enrollment)
    fields = ctx.journal.data.get("injection") or {}
    log.info("the server holds the record of %s: identity.json is rebuilt from the journalled "
             "request and its enrollment id", ctx.serial, extra=ctx.fields())
    ctx.journal.update(rebuilt_answer=True)
    return ident.rebuild_identity(fields, enrollment, ctx.clock.now())


def _wait_for_injected_fcc(ctx: Context) -> None:
    """Let FCC finish storing what it received, as long as wait-fcc would (with Parsec its exit
    is the only sign that the store is complete)."""
    limit = ctx.settings.fcc_exit_timeout
    leftover = ctx.journal.data.get("fcc_pid")
    if ctx.fcc is not None:
        if proc.wait(ctx.fcc.child, deadline=ctx.clock.monotonic() + limit) is None:
            log.warning("FCC did not exit within %g s; stopping it", limit, extra=ctx.fields())
        ctx.stop_fcc()
    elif isinstance(leftover, int):
        proc.reap_leftover(leftover, ctx.journal.data.get("fcc_started"), wait_first=limit)
        ctx.journal.update(fcc_pid=None)


def discard(ctx: Context, reason: str) -> None:
    """The server holds no record: FCC's staged credentials (with Parsec, the store it wrote in
    mcc_config, whose previous content was moved aside) are worth nothing; delete them."""
    staged = install.credentials_ready(ctx.paths, ctx.profile, ctx.parsec)
    log.info("%s; %s", reason, "discarding the staged credentials" if staged
             else "nothing was staged", extra=ctx.fields())
    ctx.stop_fcc()
    fsutil.remove(install.staging_dir(ctx.paths, ctx.profile))
    if ctx.parsec:
        fsutil.remove(install.targets(ctx.paths, ctx.profile)[0])
    ctx.journal.update(injection=None)


def after_run(ctx: Context) -> None:
    """At the end of every run: nothing was sent to the server, so nothing staged is worth
    keeping. Once an injection may have happened, only `discard` deletes."""
    if injection_possible(ctx) or ctx.paths.provisioned_marker.exists():
        return
    fsutil.remove(install.staging_dir(ctx.paths, ctx.profile))
    if ctx.parsec and ctx.cleared:
        # FCC writes a Parsec store in place from its start: it holds nothing.
        fsutil.remove(install.targets(ctx.paths, ctx.profile)[0])


def may_restore_previous(ctx: Context) -> bool:
    """After a failed reprovision: the previous identity goes back only when the new one is
    not installed and no injection may have happened (staged credentials the server may hold
    a record for stay for the next run, which recovers them)."""
    if ctx.paths.provisioned_marker.exists():
        return False  # the new identity is installed
    if injection_possible(ctx):
        log.warning("reprovision failed after the server may have injected FCC: the previous "
                    "identity stays aside, the next `pep-agent provision` recovers the new one",
                    extra=ctx.fields())
        return False
    return True
