"""The HTTP funnel: one client for the pep server's v3 API over a requests.Session.

Side effects: network requests to the configured server only. Each request is bounded as a
whole (system/request_deadline: a watchdog shuts its socket down at the deadline, however
slowly the server trickles); redirects are never followed; HTTP failures become PepErrors with
the documented exit codes (system/http_failures).
Every value sent as a secret is redacted (system/logs.redact) from any text built from an
answer (messages); log lines are redacted by the root handler's filter.
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin, urlsplit

import requests
from urllib3.exceptions import NewConnectionError

from pep_agent.errors import BadResponseError, ConfigError, ServerUnreachableError
from pep_agent.settings.urls import REQUEST_HEADERS, check_url
from pep_agent.system.http_failures import (
    mark_transient,
    mark_unsent,
    raise_for_status,
    short_reason,
    shown_url,
    timeout_error,
    tls_error,
)
from pep_agent.system.logs import redact, remember_secret
from pep_agent.system.request_deadline import WatchedAdapter, deadline

if TYPE_CHECKING:
    from pep_agent.settings.config import Settings

log = logging.getLogger(__name__)

MAX_BODY = 1_000_000  # a pep answer is a few hundred bytes; anything huge is not one
SECRET_PARAMS = ("verificationKey",)


class PepClient:
    """Talks to one pep server. `timeout` bounds each request as a whole, reading included."""

    def __init__(self, base_url: str, *, timeout: float = 60.0, connect_timeout: float = 5.0,
                 ca_cert: Path | None = None, insecure: bool = False) -> None:
        self.base_url = check_url(base_url, name="server URL")
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.session = requests.Session()
        for scheme in ("http://", "https://"):
            self.session.mount(scheme, WatchedAdapter())
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
                                   f"({shown_url(url)}); not followed")
        return self._json(self._get(url, None, what="enrollment id list"))

    def _get(self, path: str, query: Mapping[str, str] | None, *, what: str,
             budget: float | None = None) -> requests.Response:
        url = path if path.startswith(("http://", "https://")) else self.base_url + path
        for name in SECRET_PARAMS:
            if query and query.get(name):
                remember_secret(query[name])
        limit = self.timeout if budget is None else min(self.timeout, budget)
        if limit <= 0:
            raise mark_transient(ServerUnreachableError(
                f"{what}: no time left before the deadline"))
        try:
            with deadline(limit) as watch:
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
                        raise timeout_error(what, self.base_url, limit) from None
                    raise
                # A socket the watchdog shut down reads as the end of the body, and a body
                # without a Content-Length then looks whole: a body read while the deadline
                # passed is never an answer, whatever it looks like.
                if watch.fired:
                    raise timeout_error(what, self.base_url, limit)
        except requests.exceptions.SSLError as e:
            raise mark_unsent(tls_error(self.base_url, str(e))) from None
        except requests.exceptions.ConnectTimeout:
            raise mark_unsent(mark_transient(ServerUnreachableError(
                f"{what}: could not connect to {self.base_url} within "
                f"{min(self.connect_timeout, limit):g} s"))) from None
        except requests.exceptions.Timeout:
            raise timeout_error(what, self.base_url, limit) from None
        except requests.exceptions.ConnectionError as e:
            err = mark_transient(ServerUnreachableError(
                f"{what}: cannot reach {self.base_url} ({short_reason(e)})"))
            reason = getattr(e.args[0] if e.args else None, "reason", None)
            raise (mark_unsent(err) if isinstance(reason, NewConnectionError) else err) from None
        except (requests.exceptions.RequestException, OSError) as e:
            raise mark_transient(ServerUnreachableError(f"{what}: {short_reason(e)}")) from None
        resp._content = body
        raise_for_status(resp, what)
        return resp

    @staticmethod
    def _json(resp: requests.Response) -> dict[str, Any]:
        try:
            data = json.loads(resp.content)
        except ValueError:
            ctype = redact(resp.headers.get("Content-Type", "no content type"))[:80]
            raise BadResponseError(f"server answered {shown_url(resp.url)} with non-JSON "
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
    # A body shorter than its Content-Length has raised by now (the adapter's pools have
    # urllib3 enforce the length, on 1.26 as on 2.x).
    return b"".join(chunks)


def _origin(url: str) -> tuple[str, str, int | None]:
    try:
        parts = urlsplit(url)
        port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
        return parts.scheme, (parts.hostname or ""), port
    except ValueError:
        return "", "", None
