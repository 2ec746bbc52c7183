"""Which 404 means "the server holds no record": only the pep server's own `Not found!`.

A loopback server (tests/loopback.py) answers the lookups with the status, body and content
type each case gives; the client reads a real connection. Any other 404 (a proxy's page, a
wrong URL prefix, an empty body) is not a pep server's answer: it must never read as "no
record", which the recovery rule takes as leave to discard FCC's credentials.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from pep_agent.errors import BadResponseError, NotFoundError, PepError, ServerError
from pep_agent.exit_codes import Exit
from pep_agent.system.http import PepClient
from tests.loopback import Handler, LoopbackServer, replying

Answer = tuple[bytes, str]  # body, content type

# The pep server's own: express sends the string as text/html; the simulator as text/plain.
PEP_NOT_FOUND: dict[str, Answer] = {
    "express": (b"Not found!", "text/html; charset=utf-8"),
    "plain": (b"Not found!", "text/plain; charset=utf-8"),
    "whitespace": (b" Not found!\r\n", "text/plain"),
    "no-type": (b"Not found!", ""),
}
NOT_PEP: dict[str, Answer] = {
    "empty": (b"", "text/plain"),
    "blank": (b" \n", "text/html"),
    "proxy-page": (b"<html><head><title>404 Not Found</title></head><body><center><h1>404 "
                   b"Not Found</h1></center><hr><center>nginx</center></body></html>\n",
                   "text/html"),
    "express-route": (b"<!DOCTYPE html>\n<html><body><pre>Cannot GET /pep/v3/enrollment-id"
                      b"</pre></body></html>\n", "text/html; charset=utf-8"),
    "json": (b'{"error": "Not found!"}', "application/json"),
    "other-case": (b"not found!", "text/plain"),
    "longer": (b"Not found! (cache)", "text/plain"),
}
Lookup = Callable[[Answer], PepClient]


@pytest.fixture
def answering(loopback: Callable[..., LoopbackServer]) -> Lookup:
    """A client of a loopback server that answers every request 404 with the given body."""
    def start(answer: Answer) -> PepClient:
        body, ctype = answer

        def get(h: Handler) -> None:
            h.send_response(404)
            if ctype:
                h.send_header("Content-Type", ctype)
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            h.wfile.write(body)

        return PepClient(loopback(replying(get)).url, timeout=30)
    return start


@pytest.mark.parametrize("answer", list(PEP_NOT_FOUND.values()), ids=list(PEP_NOT_FOUND))
@pytest.mark.parametrize("route", ["enrollment_id", "verification_key"])
def test_the_pep_servers_not_found_is_no_record(answering: Lookup, answer: Answer,
                                                route: str) -> None:
    with pytest.raises(NotFoundError) as raised:
        getattr(answering(answer), route)("GW-1")
    assert raised.value.code == Exit.NOT_FOUND


@pytest.mark.parametrize("answer", list(NOT_PEP.values()), ids=list(NOT_PEP))
@pytest.mark.parametrize("route", ["enrollment_id", "verification_key"])
def test_any_other_404_is_not_a_pep_servers_answer(answering: Lookup, answer: Answer,
                                                   route: str) -> None:
    client = answering(answer)
    with pytest.raises(PepError) as raised:
        getattr(client, route)("GW-1")
    err = raised.value
    assert isinstance(err, BadResponseError) and not isinstance(err, NotFoundError)
    assert err.code == Exit.BAD_RESPONSE
    path = "/v3/" + route.replace("_", "-")
    # One line naming the URL, without the query; what it was; how to check.
    assert f"{client.base_url}{path} answered 404 with " in err.message
    assert "?" not in err.message and "\n" not in err.message
    assert "not a pep server's answer" in err.message
    assert "check the server URL" in err.message and "PEP_SERVER_URL" in err.hint
    assert "not found on the server" not in err.message
    # The body is described, never echoed.
    assert "nginx" not in err.message and "Cannot GET" not in err.message


def test_the_body_is_described_by_size_and_type(answering: Lookup) -> None:
    with pytest.raises(BadResponseError, match=r"with an empty body, not the pep server's "):
        answering(NOT_PEP["empty"]).enrollment_id("GW-1")
    page = NOT_PEP["proxy-page"][0]
    with pytest.raises(BadResponseError, match=rf"with {len(page)} bytes of text/html, "):
        answering(NOT_PEP["proxy-page"]).enrollment_id("GW-1")


def test_a_404_to_the_identity_request_is_still_a_wrong_url(answering: Lookup) -> None:
    """Whatever its body, even the lookups' `Not found!`: the identity route answers 404 only
    with an empty body, and nothing was injected."""
    for answer in (PEP_NOT_FOUND["plain"], NOT_PEP["proxy-page"]):
        with pytest.raises(ServerError) as raised:
            answering(answer).identity({"serialNumber": "GW-1"})
        assert raised.value.code == Exit.SERVER_ERROR and raised.value.sent is False
        assert "no pep server answers at that URL (its identity route answers 404 only with " \
            "an empty body)" in raised.value.message


def test_an_empty_404_to_the_identity_request_may_be_the_servers_own(answering: Lookup) -> None:
    """The pep server answers 404 with an empty body when it cannot read back the record it
    has just created: it injects nothing, and keeps the record (later requests: 409)."""
    with pytest.raises(ServerError) as raised:
        answering(NOT_PEP["empty"]).identity({"serialNumber": "GW-1"})
    assert raised.value.code == Exit.SERVER_ERROR and raised.value.sent is False
    assert raised.value.message.endswith(
        "answered 404 with an empty body: no pep server answers at that URL, or the pep server "
        "could not read back the record it had just created; nothing was injected")
    assert "it may have kept an unfinished record for this serial" in raised.value.hint
    assert "remove" not in raised.value.hint.replace("before anything is removed", "")
