"""The simulated pep server's HTTP API: the v3 routes, the fault knobs and the request log.

Side effects: answers requests on the socket it listens on, writes records to the server's
SQLite file, opens TCP connections to the FCC addresses it is asked to provision, and writes one
line per request on stderr. Verification keys are masked in every log line and in
/v3/requestLog. Starting and stopping the server is server.py's.
"""

from __future__ import annotations

import collections
import contextlib
import datetime
import html
import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from pep_agent.sim import factory_tool, query, records
from pep_agent.sim.faults import Faults
from pep_agent.system.logs import redact

DUPLICATE_MESSAGE = "Identity with this serial number exists already!"
REQUEST_LOG_SIZE = 10_000
MAX_BODY = 64 * 1024


class SimHTTPServer(ThreadingHTTPServer):
    """The HTTP server plus the state its request threads share."""

    daemon_threads = True
    # The default backlog of 5 would drop SYNs when a production line of gateways calls at once.
    request_queue_size = 256

    def __init__(self, address: tuple[str, int], store: records.Records, faults: Faults,
                 update_auth_cert: bytes | None = None) -> None:
        super().__init__(address, Handler)
        self.records = store
        self.faults = faults
        self.factory = factory_tool.FactorySettings.generate(update_auth_cert)
        self.request_log: collections.deque[dict[str, Any]] = collections.deque(
            maxlen=REQUEST_LOG_SIZE)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away is one log line; anything else keeps socketserver's
        traceback (a bug in the simulator must be loud)."""
        error = sys.exc_info()[1]
        if not isinstance(error, ConnectionError):
            super().handle_error(request, client_address)
            return
        with contextlib.suppress(OSError):
            sys.stderr.write(f"{client_address[0]} the client went away "
                             f"({type(error).__name__})\n")


class Handler(BaseHTTPRequestHandler):
    server: SimHTTPServer
    answered = False  # the answer to the current request has started (its line is logged)
    protocol_version = "HTTP/1.1"
    server_version = "pep-sim"
    # Idle keep-alive connections give their thread back after this many seconds.
    timeout = 120

    def log_message(self, format: str, *args: Any) -> None:
        # A closed log pipe must not stop the API.
        with contextlib.suppress(OSError):
            sys.stderr.write(redact(f"{self.address_string()} {format % args}") + "\n")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.answered = True
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            # As node.js does: a request that asked for "Connection: close" (or an HTTP/1.0
            # one) is told the connection closes, so the client does not send on it again.
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def _text(self, status: int, text: str) -> None:
        self._send(status, text.encode(), "text/plain; charset=utf-8")

    def _json(self, status: int, doc: Any) -> None:
        self._send(status, json.dumps(doc).encode(), "application/json; charset=utf-8")

    def _html_error(self, status: int, text: str) -> None:
        # What express's final handler sends for an unmatched route or a thrown error.
        page = ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
                f"<title>Error</title>\n</head>\n<body>\n<pre>{text}</pre>\n</body>\n</html>\n")
        self._send(status, page.encode(), "text/html; charset=utf-8")

    def _route(self) -> tuple[str, dict[str, str]]:
        path, _, raw_query = self.path.partition("?")
        # express routes are case-insensitive and accept one trailing slash.
        route = path.lower().rstrip("/") or "/"
        return route, query.parse_query(raw_query)

    def _dispatch(self) -> None:
        self.server.request_log.append({
            "method": self.command, "url": redact(self.path),
            "time": datetime.datetime.now(datetime.timezone.utc).isoformat(
                timespec="milliseconds").replace("+00:00", "Z"),
        })
        route, params = self._route()
        handler = _ROUTES.get((self.command, route))
        self.answered = False
        if handler is None:
            where = html.escape(redact(self.path.partition("?")[0]))
            self._html_error(404, f"Cannot {self.command} {where}")
            return
        try:
            handler(self, params)
        except ConnectionError as e:
            # The client closed its connection (a gateway that gave up, or lost power)
            # while this request was served: its line is logged already; say so once.
            self.close_connection = True
            self.log_message("the client went away before the answer (%s)", type(e).__name__)
        except Exception as e:  # a bug in the simulator must not kill the thread silently
            self.log_message("internal error: %s", type(e).__name__)
            if self.answered:
                # The answer had started: a second one would corrupt the stream (and log the
                # request twice).
                self.close_connection = True
                return
            self._text(500, f"internal error in the simulator: {type(e).__name__}")

    # One routing table for every method: an unknown route gets express's 404 page, whatever
    # the method (HEAD and others stay http.server's 501).
    do_GET = do_POST = do_PUT = do_DELETE = _dispatch

    def identity(self, params: dict[str, str]) -> None:
        faults = self.server.faults
        self._hold("delay")
        if faults.take("drop_next"):
            self.log_message("dropping the connection (fault knob)")
            self.close_connection = True
            return
        if faults.take("fail_next"):
            self._text(int(faults.get("fail_status")), "Simulated failure (fault knob)")
            return
        try:
            q = query.identity_query(params)
        except query.UriError:
            self._html_error(500, "URIError: URI malformed")
            return
        except ValueError as e:
            self._text(400, str(e))
            return
        # Like the real server, a request without ip means the gateway is the caller.
        ip = q.ip or self.client_address[0]
        try:
            record_id, _ = self.server.records.create(q)
        except records.DuplicateSerial:
            self._text(409, DUPLICATE_MESSAGE)
            return
        try:
            if faults.take("fail_injection_next"):
                raise factory_tool.InjectionError("simulated injection failure (fault knob)")
            injection = factory_tool.provision(
                self.server.factory, ip, q.port, q.serialNumber, q.hardwareVersion,
                timeout=float(faults.get("fcc_timeout")))
        except factory_tool.InjectionError as e:
            self.server.records.delete(record_id)
            self.log_message("injection failed: %s", e)
            self._text(500, f"Make sure you are running factory-configurator-client on the "
                            f"gateway with ip={ip} at port={q.port or '7777'} ({e})")
            return
        except BaseException:
            self.server.records.delete(record_id)
            raise
        if injection.warning:
            # Warnings (items FCU would send and this server was not configured with) do not fail
            # the injection, as with the real server; the operator sees them in the log.
            self.log_message("FCC warnings: %s", " | ".join(injection.warning.splitlines()))
        # FCC holds the credentials, the record is still `deployed: false`: a server killed
        # now leaves it so, as the real server does.
        self._hold("deploy_delay", "holding the record undeployed for %gs (fault knob)")
        deployed = self.server.records.deploy(record_id, injection.enrollment_id)
        self._hold("answer_delay")
        if faults.take("drop_after_next"):
            # The record stays deployed and FCC holds the credentials; only the answer is lost.
            self.log_message("dropping the connection after the injection (fault knob)")
            self.close_connection = True
            return
        self._json(200, deployed)

    def _hold(self, knob: str, note: str = "") -> None:
        """Wait the seconds fault knob `knob` says, if any (logging `note` first)."""
        seconds = float(self.server.faults.get(knob))
        if seconds > 0:
            if note:
                self.log_message(note, seconds)
            time.sleep(seconds)

    def _by_serial(self, params: dict[str, str], column: str) -> None:
        serial = params.get("serialNumber")
        if not serial:
            self._text(400, "serialNumber is required")
            return
        try:
            # Decoded like at creation, so a serial is found under the name it was sent with.
            serial = query.decode_uri(serial)
        except query.UriError:
            self._html_error(500, "URIError: URI malformed")
            return
        value = (self.server.records.enrollment_id(serial) if column == "enrollmentID"
                 else self.server.records.verification_key(serial))
        if value is None:
            self._text(404, "Not found!")
        else:
            self._text(200, value)

    def enrollment_id(self, params: dict[str, str]) -> None:
        self._by_serial(params, "enrollmentID")

    def verification_key(self, params: dict[str, str]) -> None:
        self._by_serial(params, "verificationKey")

    def enrollment_ids(self, params: dict[str, str]) -> None:
        try:
            spec = records.page_spec(params)
        except ValueError as e:
            self._text(400, str(e))
            return
        self._json(200, records.hal_page(spec, self.server.records.page(spec)))

    def request_log(self, params: dict[str, str]) -> None:
        self._json(200, list(self.server.request_log))

    def get_faults(self, params: dict[str, str]) -> None:
        self._json(200, self.server.faults.snapshot())

    def set_faults(self, params: dict[str, str]) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if not 0 < length <= MAX_BODY:
            self.close_connection = True  # an unread body would corrupt the next request
            self._text(400, "send a JSON object of fault knobs")
            return
        try:
            changes = json.loads(self.rfile.read(length))
            if not isinstance(changes, dict):
                raise ValueError("the body must be a JSON object")
            self._json(200, self.server.faults.update(changes))
        except ValueError as e:
            self._text(400, str(e))


_ROUTES = {
    ("GET", "/v3/identity"): Handler.identity,
    ("GET", "/v3/enrollment-id"): Handler.enrollment_id,
    ("GET", "/v3/verification-key"): Handler.verification_key,
    ("GET", "/v3/enrollment-ids"): Handler.enrollment_ids,
    ("GET", "/v3/requestlog"): Handler.request_log,
    ("GET", "/_sim/faults"): Handler.get_faults,
    ("POST", "/_sim/faults"): Handler.set_faults,
}
