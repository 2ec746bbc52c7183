"""The HTTP funnel: one client for the pep server's v3 API over a requests.Session.

Side effects: network requests, each with a timeout. HTTP failures become PepErrors with the
documented exit codes; response bodies that may hold identity data are never put in messages.
"""

from __future__ import annotations

import json
import logging
import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests

from pep_agent.errors import (
    AlreadyProvisionedError,
    BadResponseError,
    ConfigError,
    NotFoundError,
    PepError,
    ServerError,
    ServerUnreachableError,
)

MAX_BODY = 1_000_000  # a pep answer is a few hundred bytes; anything huge is not one
TRANSIENT_STATUS = frozenset({502, 503, 504})
_SECRET_PARAM = re.compile(r"(verificationKey=)[^&\s\"]*", re.IGNORECASE)


class _RedactSecrets(logging.Filter):
    """urllib3 logs every request line at debug level, query string included: mask the key."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if "verificationkey=" in text.lower():
            record.msg, record.args = _SECRET_PARAM.sub(r"\1[redacted]", text), None
        return True


logging.getLogger("urllib3.connectionpool").addFilter(_RedactSecrets())


def validate_url(url: str) -> str:
    """The URL without a trailing slash, or ConfigError when it is not http(s)://host[:port]."""
    parts = urlsplit(url)
    try:
        port_ok = parts.port is None or 0 < parts.port < 65536
    except ValueError:
        port_ok = False
    if parts.scheme not in ("http", "https") or not parts.hostname or not port_ok:
        raise ConfigError(f"invalid server URL {url!r}",
                          hint="use http://HOST:PORT or https://HOST:PORT")
    return url.rstrip("/")


class PepClient:
    """Talks to one pep server. Every call has a (connect, read) timeout."""

    def __init__(self, base_url: str, *, timeout: float = 60.0, connect_timeout: float = 5.0,
                 ca_cert: Path | None = None, insecure: bool = False) -> None:
        self.base_url = validate_url(base_url)
        self.timeout = (connect_timeout, timeout)
        self.session = requests.Session()
        self.session.headers["User-Agent"] = "pep-agent"
        if insecure:
            self.session.verify = False
            warnings.filterwarnings("ignore", message="Unverified HTTPS request")
        elif ca_cert is not None:
            if not ca_cert.is_file():
                raise ConfigError(f"CA certificate {ca_cert} does not exist")
            self.session.verify = str(ca_cert)

    def identity(self, query: Mapping[str, str]) -> dict[str, Any]:
        """GET /v3/identity: the server injects FCC and returns the identity JSON."""
        return self._json(self._get("/v3/identity", query, what="identity request"))

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
        return self._json(self._get(urljoin(self.base_url + "/", href), None,
                                    what="enrollment id list"))

    def _get(self, path: str, query: Mapping[str, str] | None, *, what: str) -> requests.Response:
        url = path if path.startswith(("http://", "https://")) else self.base_url + path
        try:
            # verify is passed on every call because requests lets REQUESTS_CA_BUNDLE /
            # CURL_CA_BUNDLE override a session's verify, which would silently drop
            # --ca-cert and --insecure.
            resp = self.session.get(url, params=query, timeout=self.timeout, stream=True,
                                    verify=self.session.verify)
            body = _read_capped(resp)
        except requests.exceptions.SSLError as e:
            raise ServerUnreachableError(
                f"TLS failure talking to {self.base_url}: {_short(e)}",
                hint="check --ca-cert, or the server certificate") from None
        except requests.exceptions.Timeout:
            raise _transient(ServerUnreachableError(
                f"{what}: no answer from {self.base_url} within {self.timeout[1]:g} s")) from None
        except requests.exceptions.ConnectionError as e:
            raise _transient(ServerUnreachableError(
                f"{what}: cannot reach {self.base_url} ({_short(e)})")) from None
        except requests.exceptions.RequestException as e:
            raise _transient(ServerUnreachableError(f"{what}: {_short(e)}")) from None
        resp._content = body
        _raise_for_status(resp, what)
        return resp

    @staticmethod
    def _json(resp: requests.Response) -> dict[str, Any]:
        try:
            data = json.loads(resp.content)
        except ValueError:
            raise BadResponseError(f"server answered {resp.url.split('?')[0]} with non-JSON "
                                   f"({resp.headers.get('Content-Type', 'no content type')})"
                                   ) from None
        if not isinstance(data, dict):
            raise BadResponseError("server answered with JSON that is not an object")
        return data

    @staticmethod
    def _text(resp: requests.Response) -> str:
        return resp.content.decode("utf-8", errors="replace").strip()


def _read_capped(resp: requests.Response) -> bytes:
    chunks: list[bytes] = []
    size = 0
    for chunk in resp.iter_content(65536):
        size += len(chunk)
        if size > MAX_BODY:
            resp.close()
            raise BadResponseError(f"server answer larger than {MAX_BODY} bytes; refused")
        chunks.append(chunk)
    return b"".join(chunks)


def _raise_for_status(resp: requests.Response, what: str) -> None:
    code = resp.status_code
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
    if code in TRANSIENT_STATUS:
        _transient(err)
    if code == 500:
        err.injection_failed = True
        err.hint = "the server could not inject FCC: check that FCC runs at the ip:port sent"
    raise err


def _server_text(resp: requests.Response) -> str:
    """A one-line excerpt of a plain-text error body; JSON bodies are never echoed."""
    ctype = resp.headers.get("Content-Type", "")
    if "json" in ctype:
        return ""
    text = resp.content[:300].decode("utf-8", errors="replace")
    line = " ".join(text.split())
    return f"({line[:200]})" if line else ""


def _transient(err: PepError) -> PepError:
    err.transient = True
    return err


def _short(exc: BaseException) -> str:
    text = str(exc)
    for marker in ("Connection refused", "Connection reset", "Name or service not known",
                   "Remote end closed connection", "certificate verify failed",
                   "No route to host", "Network is unreachable"):
        if marker in text:
            return marker.lower()
    return type(exc).__name__
