"""The recovery rule as a table: what the gateway (and the server) holds -> what the run does.
One row per case of the README's rule; no file system, no fakes: `decide` is a pure function."""

from __future__ import annotations

import pytest

from pep_agent.flow.recovery import (
    BAD_ANSWER,
    CONFLICT,
    DEPLOYED_ELSEWHERE,
    FCC_ENDED,
    FCC_STORAGE,
    INJECTION_FAILED,
    NO_ANSWER,
    NO_CREDENTIALS,
    REFUSED,
    REQUEST_FAILED,
    UNCONFIRMED,
    UNFINISHED,
    UNKNOWN_RECORD,
    UNREACHABLE,
    Decision,
    Ended,
    Held,
    Installed,
    decide,
    injected,
)
from pep_agent.flow.recovery import (
    Observation as O,
)
from pep_agent.state import INSTALL, MARK_PROVISIONED, PREFLIGHT, RELEASE_EDGE_CORE

MINE = Installed("SN-1", "A-1", parsec=False)
REC = Held(enrollment="A-1")
NONE = Held()
DOWN = Held(unreachable="503")
FOREIGN = Held(unreachable="html", foreign=True)


def _e(how: str, **kw: bool | str) -> Ended:
    return Ended(how, **kw)  # type: ignore[arg-type]


# (row, observation, the decision's fields that matter)
ROWS: list[tuple[str, O, dict[str, object]]] = [
    # A gateway with the marker is never provisioned again.
    ("marker", O(marker=True, injection=True, answered=True), {"start": None, "error": ""}),
    # Resume: a saved answer and the credentials -> install, no server call.
    ("answer+staged", O(answered=True, staged=True), {"start": INSTALL}),
    ("answer, FCC left over", O(answered=True, fcc_running=True), {"settle": True}),
    ("answer, no credentials", O(answered=True), {"error": NO_CREDENTIALS}),
    # A rerun after a request that may have left: FCC finishes, then the server's record.
    ("pending, FCC left over", O(injection=True, fcc_running=True), {"settle": True}),
    ("pending", O(injection=True), {"ask": True}),
    ("pending, record 200", O(injection=True, staged=True, record=REC),
     {"recover": True, "start": INSTALL}),
    ("pending, record 200, nothing staged", O(injection=True, record=REC),
     {"error": NO_CREDENTIALS}),
    ("pending, record 404", O(injection=True, staged=True, record=NONE),
     {"discard": True, "start": PREFLIGHT, "fresh": True}),
    ("pending, unreachable", O(injection=True, staged=True, record=DOWN),
     {"error": UNREACHABLE, "discard": False}),
    # A 500: the server deleted its record; FCC restarted while retries are left.
    ("500, retries left", O(injection=True, request=_e(INJECTION_FAILED, restarts_left=True)),
     {"discard": True, "restart_fcc": True, "error": ""}),
    ("500, no retries", O(injection=True, request=_e(INJECTION_FAILED)),
     {"discard": True, "error": REQUEST_FAILED}),
    # FCC printed a storage error: a restarted FCC would fail the same way.
    ("500, retries left, FCC could not store",
     O(injection=True, request=_e(INJECTION_FAILED, restarts_left=True, fcc_storage="ERR")),
     {"discard": True, "restart_fcc": False, "error": FCC_STORAGE}),
    ("500, no retries, FCC could not store",
     O(injection=True, request=_e(INJECTION_FAILED, fcc_storage="ERR")),
     {"discard": True, "error": FCC_STORAGE}),
    # A 200 that is not our identity, an answer lost after FCC ended, any other failure of a
    # request that may have left (5xx, timeouts, cut answers, the deadline): the record decides.
    ("bad 200", O(injection=True, staged=True, request=_e(BAD_ANSWER)), {"ask": True}),
    ("bad 200, record 200", O(injection=True, staged=True, request=_e(BAD_ANSWER), record=REC),
     {"recover": True}),
    ("bad 200, record 404", O(injection=True, request=_e(BAD_ANSWER), record=NONE),
     {"discard": True, "error": REQUEST_FAILED}),
    ("bad 200, not a pep server", O(injection=True, request=_e(BAD_ANSWER), record=FOREIGN),
     {"discard": False, "error": REQUEST_FAILED}),
    ("FCC ended, record 404, retries left",
     O(injection=True, request=_e(FCC_ENDED, restarts_left=True), record=NONE),
     {"discard": True, "restart_fcc": True}),
    ("FCC ended, record 404, retries left, FCC could not store",
     O(injection=True, request=_e(FCC_ENDED, restarts_left=True, fcc_storage="ERR"),
       record=NONE),
     {"discard": True, "restart_fcc": False, "error": FCC_STORAGE}),
    ("no answer (5xx, timeout, cut, deadline)", O(injection=True, request=_e(NO_ANSWER)),
     {"ask": True}),
    ("no answer, FCC still running", O(injection=True, fcc_running=True,
                                       request=_e(NO_ANSWER)), {"settle": True}),
    ("no answer, record 404", O(injection=True, request=_e(NO_ANSWER, restarts_left=True),
                                record=NONE),
     {"discard": True, "restart_fcc": False, "error": REQUEST_FAILED}),
    ("no answer, record 200", O(injection=True, staged=True, request=_e(NO_ANSWER), record=REC),
     {"recover": True}),
    ("no answer, unreachable", O(injection=True, staged=True, request=_e(NO_ANSWER),
                                 record=DOWN), {"error": UNREACHABLE, "discard": False}),
    ("never left", O(request=_e(NO_ANSWER)), {"error": REQUEST_FAILED}),
    # A redirect or another 4xx is answered before any injection: nothing of ours to keep,
    # unless an earlier request of ours may have injected FCC.
    ("refused first", O(injection=True, staged=True, request=_e(REFUSED)),
     {"discard": True, "error": REQUEST_FAILED}),
    ("refused after ours", O(injection=True, staged=True, request=_e(REFUSED, earlier=True)),
     {"ask": True, "discard": False}),
    # 409 after an earlier request of ours: our record, maybe still being injected.
    ("409 after ours, record 200", O(injection=True, staged=True,
                                     request=_e(CONFLICT, earlier=True), record=REC),
     {"recover": True}),
    ("409 after ours, 404 for now", O(injection=True, staged=True,
                                      request=_e(CONFLICT, earlier=True), record=NONE),
     {"watch": True, "discard": False}),
    ("409 after ours, 404 for an injection's time",
     O(injection=True, request=_e(CONFLICT, earlier=True),
       record=Held(watched_s=120.0)), {"discard": True, "error": UNFINISHED}),
    # 409 to our first request: not from this run; whose it is shows over time (the race).
    ("409 first", O(injection=True, request=_e(CONFLICT)), {"discard": True, "ask": True}),
    ("409 first, deployed", O(request=_e(CONFLICT), record=REC),
     {"error": DEPLOYED_ELSEWHERE}),
    ("409 first, 404 while an injection may run", O(request=_e(CONFLICT),
                                                    record=Held(watched_s=30.0)),
     {"watch": True, "error": ""}),
    ("409 first, 404 for an injection's time", O(request=_e(CONFLICT),
                                                 record=Held(watched_s=120.0)),
     {"error": UNFINISHED}),
    ("409 first, unreadable", O(request=_e(CONFLICT), record=DOWN), {"error": UNKNOWN_RECORD}),
    # A lost state directory: an installed identity of this gateway's own is asked about.
    ("installed", O(installed=MINE), {"ask": True}),
    # The installed identity is the server's: the last steps vouch for it (marker), no reboot.
    ("installed, the server's", O(installed=MINE, record=REC),
     {"adopt": True, "start": RELEASE_EDGE_CORE, "last": MARK_PROVISIONED}),
    ("installed, another record", O(installed=MINE, record=Held(enrollment="A-2")),
     {"start": PREFLIGHT, "fresh": True}),
    ("installed, no record", O(installed=MINE, record=NONE), {"start": PREFLIGHT}),
    ("installed, unreachable", O(installed=MINE, record=DOWN), {"error": UNCONFIRMED}),
    ("installed, replacing", O(installed=MINE, replacing=True), {"start": PREFLIGHT}),
    # Anything before the first request starts over.
    ("new", O(), {"start": PREFLIGHT, "fresh": True}),
    ("new, FCC left over", O(fcc_running=True), {"start": PREFLIGHT, "fresh": True}),
]


@pytest.mark.parametrize(("seen", "expected"), [(o, e) for _, o, e in ROWS],
                         ids=[r for r, _, _ in ROWS])
def test_the_recovery_rule(seen: O, expected: dict[str, object]) -> None:
    decision = decide(seen)
    got = {k: getattr(decision, k) for k in expected}
    assert got == expected, decision.reason


@pytest.mark.parametrize("seen", [o for _, o, _ in ROWS], ids=[r for r, _, _ in ROWS])
def test_credentials_go_only_when_the_server_holds_no_record(seen: O) -> None:
    """The promise, row by row: staged credentials that may be the only copy of an identity
    the server holds are never discarded."""
    decision: Decision = decide(seen)
    if decision.discard:
        record = seen.record
        said_none = record is not None and record.enrollment is None and not record.unreachable
        assert not injected(seen) or said_none, decision.reason


def test_the_watch_is_bounded_by_an_injections_time() -> None:
    seen = O(request=_e(CONFLICT), record=Held(watched_s=0.0), injection_s=10.0)
    looks = 0
    while decide(seen).watch:
        looks += 1
        seen = O(request=seen.request, record=Held(watched_s=seen.record.watched_s + 5.0),
                 injection_s=10.0)  # type: ignore[union-attr]
        assert looks < 10
    assert looks == 2 and decide(seen).error == UNFINISHED
