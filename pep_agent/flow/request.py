"""The requests to the pep server: the identity request, the record lookup, and the one retry
helper both use (full-jitter backoff under a deadline), plus the commit point, where an
answer (received, or rebuilt from the server's record) is held and saved.

Side effects: HTTP through the context's client, sleeping on the context's clock, the journal
(the injection fields are journalled before each identity request leaves), the LED and
sd_notify while waiting, and the saved answer (0600, fsync) at the commit point.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from pep_agent import state
from pep_agent.errors import BadResponseError, NotFoundError, PepError
from pep_agent.exit_codes import Exit
from pep_agent.flow.context import Context
from pep_agent.flow.recovery import Held
from pep_agent.gateway import identity as ident
from pep_agent.settings.identity_query import identity_query

if TYPE_CHECKING:
    from pep_agent.system.http import PepClient

log = logging.getLogger("pep_agent")

T = TypeVar("T")

# With a deadline of days and a tiny base, still a finite loop.
MAX_ATTEMPTS = 1000
# Answers that asking again cannot change, whatever the HTTP funnel thinks of them.
FINAL = (Exit.BAD_RESPONSE, Exit.ALREADY_PROVISIONED)


def backoff_ceiling(attempt: int, base: float, cap: float) -> float:
    """The upper bound of the wait after failed attempt number `attempt` (1-based)."""
    return float(min(cap, base * (2 ** min(attempt - 1, 30))))


def retry_delay(attempt: int, base: float, cap: float, retry_after: float | None,
                uniform: Callable[[float, float], float]) -> float:
    """The wait before the next attempt: full-jitter backoff, or the server's Retry-After.

    A Retry-After is honoured up to `cap`, plus up to `base` seconds of jitter (never past
    `cap`), so that a line of gateways told the same wait does not come back in lockstep.
    """
    if retry_after is None:
        return uniform(0, backoff_ceiling(attempt, base, cap))
    low = min(retry_after, cap)
    return uniform(low, min(cap, low + base))


def retry(ctx: Context, what: str, call: Callable[[int], T], *, deadline: float,
          retryable: Callable[[PepError], bool]) -> T:
    """`call(attempt)` until it returns; a failure `retryable` accepts is tried again after a
    backoff, as long as the next attempt can start before `deadline` (monotonic, ctx.clock).

    The deadline bounds when an attempt starts, never one under way: each attempt has the
    full HTTP timeout, so a slow but successful answer is not cut short.
    """
    attempt = 0
    while True:
        attempt += 1
        try:
            return call(attempt)
        except PepError as err:
            if not retryable(err) or attempt >= MAX_ATTEMPTS:
                raise
            delay = retry_delay(attempt, ctx.settings.retry_base, ctx.settings.retry_cap,
                                err.retry_after, ctx.clock.uniform)
            if ctx.clock.monotonic() + delay > deadline:
                raise
            ctx.journal.update(next_retry_in=round(delay, 2), last_attempt_error=err.message)
            ctx.led.show("waiting")
            ctx.say(f"{what}: attempt {attempt} failed ({err.message}); "
                    f"next try in {delay:.1f} s")
            ctx.clock.sleep(delay)


def ask_identity(ctx: Context, client: PepClient, *, deadline: float,
                 stop_retrying: Callable[[], bool], notes: dict[str, Any]) -> dict[str, Any]:
    """POST the identity request until an answer passes the checks; transient failures are
    retried unless `stop_retrying()` says the server got as far as the injection.

    `notes` gets "earlier" (an injection was journalled before the last request: a request of
    ours may have reached the server) and "server_request_s" (the answered request's time).

    Before each request leaves, the journal (fsync'd) says an injection may happen: the
    recovery rule starts there. A request that provably never left, or was refused before any
    injection (a redirect or a 4xx), takes that back.
    """
    first = ctx.journal.record.attempt or 0

    def attempt(n: int) -> dict[str, Any]:
        ip, port = ctx.fcc_address
        query = identity_query(ctx.settings, ctx.serial, ip, port, ctx.verification_key
                                            or ident.NO_VERIFICATION_KEY)
        before = ctx.journal.record.injection
        notes["earlier"] = bool(before)
        ctx.journal.update(attempt=first + n, next_retry_in=None,
                           injection=ident.rebuild_fields(query))
        started = ctx.clock.monotonic()
        try:
            reply = client.identity(query)
        except PepError as e:
            if not e.sent or e.refused:
                # Refused, no such host, a failed TLS handshake: it cannot have injected FCC;
                # nor can a request answered with a redirect or a 4xx (before any injection).
                ctx.journal.update(injection=before)
            raise
        notes["server_request_s"] = round(ctx.clock.monotonic() - started, 4)
        ctx.crash_at(state.REQUEST_IDENTITY, "answered")  # the 200 is here, not yet saved
        ident.check_response(reply, ctx.serial)
        return reply

    return retry(ctx, state.REQUEST_IDENTITY, attempt, deadline=deadline,
                 retryable=lambda e: (e.transient and not e.injection_failed
                                      and e.code not in FINAL and not stop_retrying()))


def look_up(ctx: Context, serial: str, *, patient: bool, watched: float = 0.0) -> Held:
    """The server's record for `serial` (GET /v3/enrollment-id), as the recovery rule reads
    it. With `patient` (an injection may be at stake), a server that keeps failing is asked
    again until the server deadline. `watched`: how long a record without an enrollment id
    has been seen."""
    client = ctx.client_factory()
    try:
        enrollment = retry(ctx, "recovery: reading the server's record",
                           lambda _: ident.check_enrollment_id(client.enrollment_id(serial),
                                                               serial),
                           deadline=ctx.clock.monotonic() + ctx.settings.server_deadline,
                           retryable=lambda e: patient and not isinstance(
                               e, (NotFoundError, BadResponseError)))
    except NotFoundError:
        return Held(watched_s=watched)
    except BadResponseError as e:
        return Held(unreachable=e.message, foreign=True)
    except PepError as e:
        return Held(unreachable=e.message)
    return Held(enrollment=enrollment)


def recover(ctx: Context, enrollment: str) -> None:
    """The answer of an injection the server holds a record of, rebuilt from that record and
    the journalled request, committed as the answer itself would be."""
    log.info("the server holds the record of %s: identity.json is rebuilt from the journalled "
             "request and its enrollment id", ctx.serial)
    commit(ctx, ident.rebuild_identity(ctx.journal.record.injection or {}, enrollment,
                                       ctx.clock.now()), rebuilt_answer=True)


def commit(ctx: Context, data: dict[str, Any], **more: Any) -> None:
    """The commit point: the answer is held in memory, then saved; from here on a failing
    journal or state disk is logged and tolerated, so that this answer really is installed."""
    ctx.answer = data
    ctx.journal.best_effort = True
    try:
        ident.save_response(ctx.paths.saved_response, data)
    except OSError as e:
        # The server will not answer twice: install from memory rather than give up.
        log.warning("cannot save the server's answer (%s); installing it directly",
                    e.strerror or type(e).__name__)
    ctx.journal.update(enrollment_id=data.get("enrollmentID"), response_saved=True,
                       next_retry_in=None, **more)
