"""What a failed request to the pep server means: the PepError, its exit code and hint.

No side effects: reads the wall clock only (Retry-After dates, the clock named in a TLS date
error). Each error says whether it may be retried (`transient`) and whether the request may
have reached the server (`sent`): the identity request's recovery rule reads both. A 404
means "no record" (NotFoundError) only with the pep server's own body, `Not found!`; any
other 404 is not a pep server's answer (BadResponseError), so that the recovery rule never
discards credentials on the word of a proxy or a wrong URL. Text that comes from the server
(reasons, URLs) is cut short, kept on one line and redacted of every remembered secret
(system/logs.redact) before it enters a message.
"""

from __future__ import annotations

import email.utils
import time
from urllib.parse import urljoin, urlsplit

import requests

from pep_agent.errors import (
    AlreadyProvisionedError,
    BadResponseError,
    NotFoundError,
    PepError,
    ServerError,
    ServerUnreachableError,
)
from pep_agent.system.logs import redact

TRANSIENT_STATUS = frozenset({429, 502, 503, 504})
# The pep server's own 404 body (enrollment-id and verification-key routes): the only 404 that
# means "no record for that serial". Compared after stripping surrounding whitespace; the
# content type is not checked, since the server (express's res.send of a string) labels it
# text/html and a server written to the spec may say text/plain. A proxy's or another web
# server's 404 page has another body.
NOT_FOUND_BODY = b"Not found!"


def raise_for_status(resp: requests.Response, what: str) -> None:
    """The PepError for a redirect or an error status; nothing for a success."""
    code = resp.status_code
    if code < 300:
        return
    try:
        _raise_for(resp, code, what)
    except PepError as err:
        err.refused = code < 500
        raise


def _raise_for(resp: requests.Response, code: int, what: str) -> None:
    if code < 400:
        location = resp.headers.get("Location")
        where = shown_url(urljoin(resp.url, location)) if location else "no Location"
        raise ServerError(f"{what}: the server redirects ({code}) to {where}; "
                          "redirects are never followed",
                          hint="set --server / PEP_SERVER_URL to the pep server's own URL")
    reason = _server_text(resp)
    if code == 409:
        raise AlreadyProvisionedError(f"{what}: server says 409 {reason}".rstrip())
    if code == 404:
        if urlsplit(resp.url).path.endswith("/v3/identity"):
            # The pep server's identity route answers 404 only with an empty body, when it
            # cannot read back the record it has just created; the injection then never runs.
            # Either way nothing was injected (unsent: the recovery rule has nothing to ask).
            where = shown_url(resp.url.partition("?")[0])
            hint = ("check the server URL (--server / PEP_SERVER_URL): the pep server's own "
                    "address, such as http://HOST:5151, without a path")
            if resp.content.strip():
                raise mark_unsent(ServerError(
                    f"{what}: {where} answered 404: no pep server answers at that URL (its "
                    "identity route answers 404 only with an empty body)", hint=hint))
            raise mark_unsent(ServerError(
                f"{what}: {where} answered 404 with an empty body: no pep server answers at "
                "that URL, or the pep server could not read back the record it had just "
                "created; nothing was injected",
                # No word on removing that record: by the time anyone looks, it may be another
                # gateway's, under injection. The 409 path of the next run checks it first.
                hint=hint + "; if it is the pep server's, it may have kept an unfinished record "
                            "for this serial, and later requests get 409: `pep-agent provision` "
                            "then says how to check that record before anything is removed"))
        if resp.content.strip() == NOT_FOUND_BODY:
            raise NotFoundError(f"{what}: not found on the server")
        raise _foreign_404(resp, what)
    if code == 400:
        raise ServerError(f"{what}: server rejected the request (400 {reason})".rstrip(),
                          hint="check the values passed to the server")
    err = ServerError(f"{what}: server error {code} {reason}".rstrip())
    if code in (401, 403, 407):
        # The pep server has no authentication: this comes from something in between.
        err.hint = ("the pep server does not authenticate: a proxy or gateway between this "
                    "device and the server refused the request; check the server URL and the "
                    "HTTP(S)_PROXY / NO_PROXY settings")
    if code in TRANSIENT_STATUS:
        mark_transient(err)
        err.retry_after = retry_after(resp.headers.get("Retry-After"))
        if code == 429:
            err.hint = "the server (or a proxy) limits the request rate; retried until the deadline"
    if code == 500:
        err.injection_failed = True
        err.hint = "the server could not inject FCC: check that FCC runs at the ip:port sent"
    raise err


def _foreign_404(resp: requests.Response, what: str) -> BadResponseError:
    """A 404 without the pep server's own body: a wrong path or URL prefix, a proxy, another
    web server at that address. It says nothing about the server's records, so it must never
    read as "no record" (the recovery rule would discard credentials the server may hold)."""
    body = resp.content
    if body.strip():
        ctype = resp.headers.get("Content-Type", "").partition(";")[0].strip()
        ctype = "".join(c for c in ctype if c.isprintable() and not c.isspace())[:60]
        shown = f"{len(body)} bytes of {redact(ctype) or 'no content type'}"
    else:
        shown = "an empty body"
    return BadResponseError(
        f"{what}: {shown_url(resp.url.partition('?')[0])} answered 404 with {shown}, not the "
        "pep server's \"Not found!\": not a pep server's answer; check the "
        "server URL (--server / PEP_SERVER_URL)",
        hint="the pep server answers 404 only with the body \"Not found!\": set --server / "
             "PEP_SERVER_URL to the pep server's own address, such as http://HOST:5151, "
             "without a path, with nothing else (a proxy, another web server) answering there")


def retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delay-seconds or HTTP-date); None if unusable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(min(int(value[:12]), 10**9))
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _server_text(resp: requests.Response) -> str:
    """A one-line excerpt of a plain-text error body; JSON bodies are never echoed."""
    ctype = resp.headers.get("Content-Type", "")
    if "json" in ctype:
        return ""
    text = resp.content[:300].decode("utf-8", errors="replace")
    line = redact(" ".join("".join(c if c.isprintable() else " " for c in text).split()))
    return f"({line[:200]})" if line else ""


def shown_url(url: str) -> str:
    """A URL from the server for a message: no query (it may echo ours), no credentials."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        shown = f"{parts.scheme}://{host}" + (f":{parts.port}" if parts.port else "") + parts.path
        if parts.query:
            shown += "?..."
    except ValueError:
        shown = url
    shown = "".join(c if c.isprintable() and not c.isspace() else "?" for c in shown)
    return redact(shown[:200])


# OpenSSL's verify reasons that mean "not valid at this moment": a wrong clock, most often.
_DATE_REASONS = ("certificate is not yet valid", "certificate has expired")


def tls_error(base_url: str, detail: str, *, now: float | None = None) -> PepError:
    """The error for a failed TLS handshake; `detail` is the TLS library's text.

    A date failure names the clock: boards without a battery-backed clock start at 1970 (or
    the image's build date) until NTP syncs, and then every certificate looks not yet valid.
    """
    reason = next((r for r in _DATE_REASONS if r in detail), None)
    if reason is None:
        return ServerUnreachableError(
            f"TLS failure talking to {base_url}: {_short_text(detail, 'TLS error')}",
            hint="pass the CA that signed the server's certificate with --ca-cert "
                 "(PEP_CA_CERT), or fix the server's certificate chain")
    clock = time.strftime("%Y-%m-%d %H:%M:%S UTC",
                          time.gmtime(time.time() if now is None else now))
    return ServerUnreachableError(
        f"TLS failure talking to {base_url}: {reason} by this gateway's clock, "
        f"which reads {clock}",
        hint="set the clock (a board without a battery-backed clock reads 1970 at first "
             "boot): wait for NTP (`timedatectl` shows 'System clock synchronized: yes') "
             "or set it with `date -s`, then run again")


def timeout_error(what: str, base_url: str, limit: float) -> PepError:
    return mark_transient(ServerUnreachableError(
        f"{what}: no complete answer from {base_url} within {limit:g} s"))


def mark_unsent(err: PepError) -> PepError:
    """The request never left (no connection, or no TLS session): nothing was asked."""
    err.sent = False
    return err


def mark_transient(err: PepError) -> PepError:
    err.transient = True
    return err


def short_reason(exc: BaseException) -> str:
    """A known cause named in `exc`, else its type: never the library's whole text, which
    may quote the request URL (and the verification key in its query)."""
    return _short_text(str(exc), type(exc).__name__)


def _short_text(text: str, fallback: str) -> str:
    if "IncompleteRead" in text:  # urllib3: fewer body bytes came than Content-Length said
        return "answer cut short"
    for marker in ("Connection refused", "Connection reset",
                   "Name or service not known",
                   "Remote end closed connection", "certificate verify failed",
                   "No route to host", "Network is unreachable"):
        if marker in text:
            return marker.lower()
    return fallback
