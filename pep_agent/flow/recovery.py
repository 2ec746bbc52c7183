"""The recovery rule: what the gateway (and, when it cannot tell, the server) holds, observed
into one value by the runner, and the pure decision of what happens to it.

From the moment the journal says an injection may have happened (written before every
identity request), FCC's credentials may be the only copy of an identity the server will
never hand out again. They are deleted only when the server says it holds no record for the
serial: a 500 to the identity request, or the pep server's own 404 (`Not found!`) from
GET /v3/enrollment-id (any other 404 is not its answer). `injected` is the
one answer to "may the server hold a record of an injection into our FCC?", and `decide` the
one place that decides whether credentials are kept, recovered, discarded or restored; the
runner acts on its decisions.

Side effects: none (no I/O): the runner observes and acts.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from pep_agent.errors import PepError
from pep_agent.exit_codes import Exit
from pep_agent.state import INSTALL, MARK_PROVISIONED, PREFLIGHT, REBOOT, RELEASE_EDGE_CORE

# The wait between two looks at a record without an enrollment id.
WATCH_GAP_S = 5.0

# How this run's identity request ended, when the decision follows a failed one.
INJECTION_FAILED = "500"  # the server could not inject FCC and deleted its record
CONFLICT = "409"  # the server holds a record for the serial
REFUSED = "refused"  # a redirect or another 4xx: answered before any injection
BAD_ANSWER = "bad-answer"  # a 200 that is not our identity: the server injected FCC
FCC_ENDED = "fcc-ended"  # no answer, but FCC ended: the server got as far as the injection
NO_ANSWER = "no-answer"  # no usable answer (5xx, timeouts, cut answers, the deadline, ...)


@dataclass(frozen=True)
class Held:
    """What the server said of its record for our serial."""

    enrollment: str | None = None  # its enrollment id; None: no record (its `Not found!`)
    unreachable: str = ""  # why the record could not be read (the server is down, ...)
    foreign: bool = False  # the answer was not a pep server's
    watched_s: float = 0.0  # how long a 404 has been seen (looked up again meanwhile)


@dataclass(frozen=True)
class Installed:
    """An identity installed for this gateway's own serial, with complete credentials."""

    serial: str
    enrollment: str | None
    parsec: bool


@dataclass(frozen=True)
class Ended:
    """How this run's identity request ended."""

    how: str  # one of the constants above
    earlier: bool = False  # an injection was journalled before the failed request
    restarts_left: bool = False  # FCC may be restarted and asked again
    fcc_storage: str = ""  # the storage error FCC printed, if any: a restarted FCC would fail


@dataclass(frozen=True)
class Observation:
    """What the gateway holds, observed once (and the server's record, once asked)."""

    marker: bool = False
    answered: bool = False  # the server's answer is saved
    injection: bool = False  # the journal says a request of ours may have reached the server
    staged: bool = False  # FCC's stored credentials are complete (staging, or in place)
    fcc_running: bool = False  # this run's FCC, or one left over from an interrupted run
    # An identity installed without a marker, for this gateway's own serial, with complete
    # credentials (None otherwise).
    installed: Installed | None = None
    replacing: bool = False  # reprovision: the installed identity is being replaced
    request: Ended | None = None  # None: the decision at the start of a run
    record: Held | None = None  # None: not asked
    injection_s: float = 120.0  # how long an injection can take (the request's timeout)

    @property
    def hold_edge_core(self) -> bool:
        """A run that resumes: edge-core must not start on an empty identity meanwhile."""
        return self.request is None and not self.marker and (self.answered or self.injection)


def injected(seen: Observation) -> bool:
    """May the server hold a record of an injection into our FCC? Yes once a request of ours
    may have reached it (the journal says so before each request leaves) or its answer is
    saved; no when the server said otherwise: a 500 (it deleted its record), or a 409, a
    redirect or another 4xx to our first request (answered before any injection)."""
    if seen.answered:
        return True
    ended = seen.request
    if ended is not None and (ended.how == INJECTION_FAILED or (
            ended.how in (CONFLICT, REFUSED) and not ended.earlier)):
        return False
    return seen.injection


@dataclass(frozen=True)
class Decision:
    """What the run does next. At most one of the looks (`settle`, `ask`, `watch`) is set:
    the runner does it, observes again and asks `decide` again."""

    reason: str
    start: str | None = None  # the step to go on from; None with no error: provisioned
    last: str = REBOOT  # the step to end with
    settle: bool = False  # let FCC finish storing what it received (then stop it)
    ask: bool = False  # read the server's record
    watch: bool = False  # read the server's record again, after a wait
    discard: bool = False  # delete FCC's staged credentials (the server holds no record)
    recover: bool = False  # rebuild the answer from the server's record
    adopt: bool = False  # the installed identity is the server's: the marker is rewritten
    restart_fcc: bool = False  # start FCC afresh and ask again
    fresh: bool = False  # a new run: stop FCC left over, clear staging, reset the journal
    wait_s: float = 0.0  # watch: how long to wait before the look
    patient: bool = False  # ask, watch: retry the server's failures under its deadline
    error: str = ""  # the run ends with this error: one of the names below


NO_CREDENTIALS = "no-credentials"  # the server holds a record, FCC stored nothing usable
UNREACHABLE = "unreachable"  # the record cannot be read: everything stays, the unit retries
UNCONFIRMED = "unconfirmed"  # an installed identity the server cannot confirm now
UNFINISHED = "unfinished"  # 409 and a record that stayed without an enrollment id
DEPLOYED_ELSEWHERE = "deployed-elsewhere"  # 409 and a deployed record: another gateway's
UNKNOWN_RECORD = "unknown-record"  # 409 and a record that cannot be read
REQUEST_FAILED = "request-failed"  # the request's own error
FCC_STORAGE = "fcc-storage"  # FCC could not store: restarting it would fail the same way


def decide(seen: Observation) -> Decision:
    """The recovery rule, with no I/O: one row per case of the README's rule. A look at the
    server's record says how patient it is (an injection may be at stake: the server's
    failures are retried under its deadline) and how long to wait first."""
    decision = _rule(seen)
    if decision.watch:
        left = seen.injection_s - (seen.record.watched_s if seen.record else 0.0)
        decision = replace(decision, wait_s=max(0.0, min(WATCH_GAP_S, left)))
    if decision.ask or decision.watch:
        decision = replace(decision, patient=injected(seen))
    return decision


def _rule(seen: Observation) -> Decision:
    if seen.marker:
        return Decision("the gateway is provisioned")
    ended, record = seen.request, seen.record
    if ended is not None and ended.how == CONFLICT and not ended.earlier:
        return _conflict(seen)
    if not injected(seen):
        if ended is not None:
            return _no_record("the server holds no record from this run", ended,
                              ended.how == INJECTION_FAILED)
        return _fresh_start(seen)
    if seen.fcc_running:
        return Decision("an injection may have happened: FCC finishes storing first",
                        settle=True)
    if seen.answered:
        if not seen.staged:
            return Decision("a saved answer, but FCC stored no credentials",
                            error=NO_CREDENTIALS)
        return Decision("resuming after a saved server answer", start=INSTALL)
    if record is None:
        return Decision("an injection may have happened but no answer is saved: FCC's "
                        "credentials are kept while the server is asked for its record",
                        ask=True)
    if record.foreign:
        return Decision("the record's answer is not a pep server's: nothing is discarded",
                        error=REQUEST_FAILED if ended is not None else UNREACHABLE)
    if record.unreachable:
        return Decision("the server's record cannot be read: everything stays",
                        error=UNREACHABLE)
    if record.enrollment is not None:
        if not seen.staged:
            return Decision("the server holds a record but FCC stored no credentials",
                            error=NO_CREDENTIALS)
        return Decision("the server holds the record: the answer is rebuilt from it",
                        recover=True, start=INSTALL)
    if ended is not None and ended.how == CONFLICT:
        # 409 after an earlier request of ours, and no enrollment id yet: that earlier
        # request may still be injecting our FCC; look again before anything goes.
        if record.watched_s < seen.injection_s:
            return Decision("409, and the record has no enrollment id yet: looking again",
                            watch=True)
        return Decision("409, and the record stayed without an enrollment id", discard=True,
                        error=UNFINISHED)
    if ended is None:
        return replace(_fresh_start(seen), reason="the server holds no record: starting over",
                       discard=True)
    return _no_record("GET /v3/enrollment-id says the server holds no record", ended,
                      ended.how == FCC_ENDED)


def _no_record(reason: str, ended: Ended, restartable: bool) -> Decision:
    """The server holds no record of this run's failed request: what FCC stored goes; FCC is
    started afresh and asked again while restarts are left. An FCC that could not store says
    why the injection failed, restarts left or not: a restarted one would fail the same way."""
    if restartable and ended.fcc_storage:
        return Decision(f"{reason}, and FCC could not store", discard=True, error=FCC_STORAGE)
    retry = restartable and ended.restarts_left
    return Decision(reason, discard=True, restart_fcc=retry, error="" if retry else REQUEST_FAILED)


def _conflict(seen: Observation) -> Decision:
    """409 to our first request: the record is not from this run and nothing was injected
    into our FCC. Whose it is shows over time: a record being injected right now (another
    gateway with this serial) has no enrollment id until its injection ends."""
    record = seen.record
    if record is None:
        return Decision("409 to our first request: the record is not from this run",
                        discard=True, ask=True)
    if record.enrollment is not None:
        return Decision("409, and the server's record is deployed", error=DEPLOYED_ELSEWHERE)
    if record.unreachable or record.foreign:
        return Decision("409, and the server's record cannot be read", error=UNKNOWN_RECORD)
    if record.watched_s < seen.injection_s:
        return Decision("409, and the record has no enrollment id yet: looking again",
                        watch=True)
    return Decision("409, and the record stayed without an enrollment id", error=UNFINISHED)


def _fresh_start(seen: Observation) -> Decision:
    """Nothing of an injection to keep: an installed identity without a marker is asked
    about; anything else starts over."""
    if seen.installed is not None and not seen.replacing:
        record = seen.record
        if record is None:
            return Decision("no marker, but this gateway's identity is installed: asking the "
                            "server whether it is the one it holds", ask=True)
        if record.unreachable or record.foreign:
            return Decision("the server's record cannot be read: the installed identity "
                            "stays", error=UNCONFIRMED)
        if record.enrollment is not None and record.enrollment == seen.installed.enrollment:
            # The run's last steps vouch for it as for an identity it installed itself.
            return Decision("the server holds the installed identity: the gateway is "
                            "provisioned", adopt=True, start=RELEASE_EDGE_CORE,
                            last=MARK_PROVISIONED)
    return Decision("starting over", start=PREFLIGHT, fresh=True)


def how_it_ended(err: PepError) -> str:
    """How a failed identity request ended, as its error tells (the runner's observation tells
    FCC_ENDED from NO_ANSWER)."""
    if err.injection_failed:
        return INJECTION_FAILED
    if err.code == Exit.ALREADY_PROVISIONED:
        return CONFLICT
    if err.refused:
        return REFUSED
    if err.code == Exit.BAD_RESPONSE:
        return BAD_ANSWER
    return NO_ANSWER
