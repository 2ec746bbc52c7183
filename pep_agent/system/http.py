"""The HTTP funnel: one client for the pep server's v3 API over a requests.Session.

Side effects: network requests to the configured server only. Each request is bounded as a
whole (a watchdog shuts its socket down at the deadline, however slowly the server trickles);
redirects are never followed; HTTP failures become PepErrors with the documented exit codes.
Every value sent as a secret is redacted (system/logs.redact) from any text built from an
answer (messages); log lines are redacted by the root handler's filter.
"""

from __future__ import annotations

import contextlib
import email.utils
import json
import logging
import socket
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin, urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3 import connection as u3conn
from urllib3 import connectionpool as u3pool
from urllib3.exceptions import NewConnectionError

from pep_agent.errors import (
    AlreadyProvisionedError,
    BadResponseError,
    ConfigError,
    NotFoundError,
    PepError,
    ServerError,
    ServerUnreachableError,
)
from pep_agent.system.logs import redact, remember_secret
from pep_agent.urls import REQUEST_HEADERS, check_url

if TYPE_CHECKING:
    from pep_agent.config import Settings

log = logging.getLogger(__name__)

MAX_BODY = 1_000_000  # a pep answer is a few hundred bytes; anything huge is not one
TRANSIENT_STATUS = frozenset({429, 502, 503, 504})
SECRET_PARAMS = ("verificationKey",)


# --- the whole-request deadline ----------------------------------------------------------------
# The read timeout bounds each socket read only: a server sending one byte a second would hold
# a request forever. So every socket a request opens is registered (a dup of its descriptor,
# which shares the connection) and a timer shuts the connection down when the request's time
# is up; the blocked read then returns at once and the request fails as a timeout.

_current = threading.local()


class _Watch:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.socks: list[socket.socket] = []
        self.fired = False

    def add(self, sock: socket.socket) -> None:
        with self.lock:
            self.socks.append(sock.dup())
            if self.fired:
                self._shut(self.socks[-1])

    def fire(self) -> None:
        with self.lock:
            self.fired = True
            for sock in self.socks:
                self._shut(sock)

    def close(self) -> None:
        with self.lock:
            for sock in self.socks:
                sock.close()
            self.socks.clear()

    @staticmethod
    def _shut(sock: socket.socket) -> None:
        with contextlib.suppress(OSError):  # already closed by the other side
            sock.shutdown(socket.SHUT_RDWR)


@contextlib.contextmanager
def _deadline(seconds: float) -> Iterator[_Watch]:
    watch = _Watch()
    timer = threading.Timer(seconds, watch.fire)
    timer.daemon = True
    _current.watch = watch
    timer.start()
    try:
        yield watch
    finally:
        timer.cancel()
        _current.watch = None
        watch.close()


def _watched(sock: socket.socket) -> socket.socket:
    watch = getattr(_current, "watch", None)
    if watch is not None:
        watch.add(sock)
    return sock


class _HTTPConnection(u3conn.HTTPConnection):
    def _new_conn(self) -> socket.socket:
        return _watched(super()._new_conn())


class _HTTPSConnection(u3conn.HTTPSConnection):
    def _new_conn(self) -> socket.socket:
        return _watched(super()._new_conn())


class _HTTPPool(u3pool.HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(u3pool.HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


_POOLS = {"http": _HTTPPool, "https": _HTTPSPool}


class _WatchedAdapter(HTTPAdapter):
    """requests' adapter with connections whose sockets the deadline watchdog can reach."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _POOLS

    def proxy_manager_for(self, proxy: str, **kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **kwargs)
        if not proxy.lower().startswith("socks"):  # SOCKS has connection classes of its own
            manager.pool_classes_by_scheme = _POOLS
        return manager


class PepClient:
    """Talks to one pep server. `timeout` bounds each request as a whole, reading included."""

    def __init__(self, base_url: str, *, timeout: float = 60.0, connect_timeout: float = 5.0,
                 ca_cert: Path | None = None, insecure: bool = False) -> None:
        self.base_url = check_url(base_url, name="server URL")
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.session = requests.Session()
        for scheme in ("http://", "https://"):
            self.session.mount(scheme, _WatchedAdapter())
        # Every header is fixed, so that the request's size is known before anything changes
        # (urls.request_size); Connection: close makes one connection per request, and only a
        # socket opened by the request is watched.
        self.session.headers.clear()
        self.session.headers.update(REQUEST_HEADERS)
        if insecure:
            self.session.verify = False
            warnings.filterwarnings("ignore", message="Unverified HTTPS request")
        elif ca_cert is not None:
            if not ca_cert.is_file():
                raise ConfigError(f"CA certificate {ca_cert} does not exist")
            self.session.verify = str(ca_cert)

    @classmethod
    def from_settings(cls, settings: Settings, *,
                      warn: Callable[[str], None] | None = None) -> PepClient:
        """The client the settings describe. With --insecure, `warn` (default: a log warning)
        is told every time: an unverified server can hand out any identity."""
        if settings.insecure:
            (warn or log.warning)(f"--insecure (PEP_INSECURE): the TLS certificate of "
                                  f"{settings.server_url} is NOT verified; anyone on the "
                                  "path can impersonate the pep server")
        return cls(settings.server_url, timeout=settings.http_timeout,
                   ca_cert=settings.ca_cert, insecure=settings.insecure)

    def identity(self, query: Mapping[str, str], *,
                 budget: float | None = None) -> dict[str, Any]:
        """GET /v3/identity: the server injects FCC and returns the identity JSON.

        `budget` (seconds) shortens this request to what is left of a caller's deadline.
        """
        return self._json(self._get("/v3/identity", query, what="identity request",
                                    budget=budget))

    def enrollment_id(self, serial: str) -> str:
        return self._text(self._get("/v3/enrollment-id", {"serialNumber": serial},
                                    what=f"enrollment id of {serial!r}"))

    def verification_key(self, serial: str) -> str:
        return self._text(self._get("/v3/verification-key", {"serialNumber": serial},
                                    what=f"verification key of {serial!r}"))

    def enrollment_ids(self, *, limit: int | None = None, order: str | None = None,
                       last: str | None = None) -> dict[str, Any]:
        query = {k: str(v) for k, v in (("limit", limit), ("order", order), ("last", last))
                 if v is not None}
        return self._json(self._get("/v3/enrollment-ids", query, what="enrollment id list"))

    def follow(self, href: str) -> dict[str, Any]:
        """GET a HAL link (absolute or relative to the server) and decode its JSON."""
        url = urljoin(self.base_url + "/", href)
        if _origin(url) != _origin(self.base_url):
            # A link is data from the server: it must not send us, or our headers, elsewhere.
            raise BadResponseError(f"the server's next-page link points to another server "
                                   f"({_shown_url(url)}); not followed")
        return self._json(self._get(url, None, what="enrollment id list"))

    def _get(self, path: str, query: Mapping[str, str] | None, *, what: str,
             budget: float | None = None) -> requests.Response:
        url = path if path.startswith(("http://", "https://")) else self.base_url + path
        for name in SECRET_PARAMS:
            if query and query.get(name):
                remember_secret(query[name])
        limit = self.timeout if budget is None else min(self.timeout, budget)
        if limit <= 0:
            raise _transient(ServerUnreachableError(f"{what}: no time left before the deadline"))
        try:
            with _deadline(limit) as watch:
                try:
                    # verify is passed on every call because requests lets REQUESTS_CA_BUNDLE /
                    # CURL_CA_BUNDLE override a session's verify, which would silently drop
                    # --ca-cert and --insecure. The pep server never redirects: a redirect is
                    # answered as an error, so nothing (least of all the key) goes elsewhere.
                    resp = self.session.get(url, params=query, stream=True,
                                            timeout=(min(self.connect_timeout, limit), limit),
                                            verify=self.session.verify, allow_redirects=False)
                    body = _read_capped(resp)
                except (requests.exceptions.RequestException, OSError):
                    if watch.fired:
                        raise _timeout(what, self.base_url, limit) from None
                    raise
                # A socket the watchdog shut down reads as the end of the body, and urllib3
                # 1.26 returns what came before it as a whole answer (2.x raises): a body read
                # while the deadline passed is never an answer, whatever it looks like.
                if watch.fired:
                    raise _timeout(what, self.base_url, limit)
        except requests.exceptions.SSLError as e:
            raise _unsent(tls_error(self.base_url, str(e))) from None
        except requests.exceptions.ConnectTimeout:
            raise _unsent(_transient(ServerUnreachableError(
                f"{what}: could not connect to {self.base_url} within "
                f"{min(self.connect_timeout, limit):g} s"))) from None
        except requests.exceptions.Timeout:
            raise _timeout(what, self.base_url, limit) from None
        except requests.exceptions.ConnectionError as e:
            err = _transient(ServerUnreachableError(
                f"{what}: cannot reach {self.base_url} ({_short(e)})"))
            reason = getattr(e.args[0] if e.args else None, "reason", None)
            raise (_unsent(err) if isinstance(reason, NewConnectionError) else err) from None
        except (requests.exceptions.RequestException, OSError) as e:
            raise _transient(ServerUnreachableError(f"{what}: {_short(e)}")) from None
        resp._content = body
        _raise_for_status(resp, what)
        return resp

    @staticmethod
    def _json(resp: requests.Response) -> dict[str, Any]:
        try:
            data = json.loads(resp.content)
        except ValueError:
            ctype = redact(resp.headers.get("Content-Type", "no content type"))[:80]
            raise BadResponseError(f"server answered {_shown_url(resp.url)} with non-JSON "
                                   f"({ctype})") from None
        if not isinstance(data, dict):
            raise BadResponseError("server answered with JSON that is not an object")
        return data

    @staticmethod
    def _text(resp: requests.Response) -> str:
        return resp.content.decode("utf-8", errors="replace").strip()


def _read_capped(resp: requests.Response) -> bytes:
    declared = resp.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > MAX_BODY:
        resp.close()
        raise BadResponseError(f"server answer of {int(declared)} bytes is larger than "
                               f"{MAX_BODY} bytes; refused")
    chunks: list[bytes] = []
    size = 0
    for chunk in resp.iter_content(65536):
        size += len(chunk)
        if size > MAX_BODY:
            resp.close()
            raise BadResponseError(f"server answer larger than {MAX_BODY} bytes; refused")
        chunks.append(chunk)
    _check_complete(resp)
    return b"".join(chunks)


def _check_complete(resp: requests.Response) -> None:
    """Raise when fewer bytes came than the server declared (it closed mid-body).

    urllib3 2.x raises on such a body by itself; 1.26 returns it as if it were whole. The count
    is of bytes as they came over the wire (before any content decoding), as Content-Length is.
    """
    declared = resp.headers.get("Content-Length", "").strip()
    received = resp.raw.tell() if resp.raw is not None else None
    if declared.isdigit() and isinstance(received, int) and received < int(declared):
        resp.close()
        raise requests.exceptions.ChunkedEncodingError(
            f"answer cut short: {received} of {int(declared)} bytes")


def _raise_for_status(resp: requests.Response, what: str) -> None:
    code = resp.status_code
    if 300 <= code < 400:
        location = resp.headers.get("Location")
        where = _shown_url(urljoin(resp.url, location)) if location else "no Location"
        raise ServerError(f"{what}: the server redirects ({code}) to {where}; "
                          "redirects are never followed",
                          hint="set --server / PEP_SERVER_URL to the pep server's own URL")
    if code < 400:
        return
    reason = _server_text(resp)
    if code == 409:
        raise AlreadyProvisionedError(f"{what}: server says 409 {reason}".rstrip())
    if code == 404:
        raise NotFoundError(f"{what}: not found on the server")
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
        _transient(err)
        err.retry_after = retry_after(resp.headers.get("Retry-After"))
        if code == 429:
            err.hint = "the server (or a proxy) limits the request rate; retried until the deadline"
    if code == 500:
        err.injection_failed = True
        err.hint = "the server could not inject FCC: check that FCC runs at the ip:port sent"
    raise err


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


def _origin(url: str) -> tuple[str, str, int | None]:
    try:
        parts = urlsplit(url)
        port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
        return parts.scheme, (parts.hostname or ""), port
    except ValueError:
        return "", "", None


def _shown_url(url: str) -> str:
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


def _timeout(what: str, base_url: str, limit: float) -> PepError:
    return _transient(ServerUnreachableError(
        f"{what}: no complete answer from {base_url} within {limit:g} s"))


def _unsent(err: PepError) -> PepError:
    """The request never left (no connection, or no TLS session): nothing was asked."""
    err.sent = False
    return err


def _transient(err: PepError) -> PepError:
    err.transient = True
    return err


def _short(exc: BaseException) -> str:
    return _short_text(str(exc), type(exc).__name__)


def _short_text(text: str, fallback: str) -> str:
    for marker in ("answer cut short", "Connection refused", "Connection reset",
                   "Name or service not known",
                   "Remote end closed connection", "certificate verify failed",
                   "No route to host", "Network is unreachable"):
        if marker in text:
            return marker.lower()
    return fallback
