"""The tests' one hand-made server: a TCP (HTTP, optionally TLS) server on 127.0.0.1 in a thread
of the test process, with the handler each test gives it. The `loopback` fixture
(tests/conftest.py) starts them and stops every one after its test.

- an HTTP handler subclasses `Handler` (quiet, with `answer()`), or `replying(fn)` makes one from
  a function;
- a handler of raw connections (bytes written by hand, a connection closed unanswered, a TLS
  handshake and nothing else) subclasses socketserver.BaseRequestHandler.

Side effects: listens on an ephemeral loopback port until `stop()`; `make_pki` runs openssl.
"""

from __future__ import annotations

import socketserver
import ssl
import subprocess
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any


class LoopbackServer(socketserver.ThreadingTCPServer):
    """Serves `handler` on 127.0.0.1 (or `host`), on an ephemeral port unless `port` is given,
    from a thread, from construction to `stop()`. With `tls`, connections are TLS, handshaken
    in the handler's thread."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, handler: type[socketserver.BaseRequestHandler], *,
                 tls: ssl.SSLContext | None = None, host: str = "127.0.0.1",
                 port: int = 0) -> None:
        super().__init__((host, port), handler)
        if tls is not None:
            self.socket = tls.wrap_socket(self.socket, server_side=True,
                                          do_handshake_on_connect=False)
        self.paths: list[str] = []  # every HTTP request's path, query included, in order
        # Set first thing in stop(): a handler writing slowly on purpose checks it.
        self.stopping = threading.Event()
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.1},
                                        daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    @property
    def url(self) -> str:
        scheme = "https" if isinstance(self.socket, ssl.SSLSocket) else "http"
        return f"{scheme}://{self.server_address[0]}:{self.port}"

    def stop(self) -> None:
        self.stopping.set()
        self.shutdown()
        self.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> LoopbackServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Handler(BaseHTTPRequestHandler):
    """An HTTP handler that logs nothing and records each path in the server's `paths`; a
    subclass writes `get()`."""

    server: LoopbackServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.server.paths.append(self.path)
        self.get()

    def get(self) -> None:
        self.answer(404, b"")

    def answer(self, code: int, body: bytes, ctype: str = "application/json",
               **headers: str) -> None:
        """A whole answer; header names are given with `_` for `-` (Retry_After=...)."""
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()
        self.wfile.write(body)


def replying(get: Callable[[Handler], None]) -> type[Handler]:
    """A handler whose GET is `get(handler)`."""
    return type("Replying", (Handler,), {"get": lambda self: get(self)})


def make_pki(where: Path) -> tuple[Path, Path, Path]:
    """A factory CA and a server certificate for 127.0.0.1 signed by it (openssl CLI).

    Everything comes from our own config file, so the result does not depend on the system's
    openssl.cnf. With -addext on top of that file's v3_ca, OpenSSL 1.1.1 (Debian bullseye) gave
    the CA basicConstraints twice (3.x replaces it), and verification refused the chain.
    """
    ca_key, ca, key, csr, cert = (where / n for n in ("ca.key", "ca.pem", "srv.key",
                                                      "srv.csr", "srv.pem"))
    config = where / "pki.cnf"
    config.write_text(
        "[req]\ndistinguished_name = dn\nx509_extensions = ca_ext\n[dn]\n"
        "[ca_ext]\nbasicConstraints = critical,CA:TRUE\nkeyUsage = critical,keyCertSign,cRLSign\n"
        "subjectKeyIdentifier = hash\n"
        "[srv_ext]\nsubjectAltName = IP:127.0.0.1\nbasicConstraints = critical,CA:FALSE\n"
        "keyUsage = critical,digitalSignature\nextendedKeyUsage = serverAuth\n"
        "authorityKeyIdentifier = keyid\nsubjectKeyIdentifier = hash\n")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
          "-config", config]
    for argv in (
        ["req", "-x509", *ec, "-keyout", ca_key, "-out", ca, "-days", "2",
         "-subj", "/CN=test factory CA"],
        ["req", *ec, "-keyout", key, "-out", csr, "-subj", "/CN=127.0.0.1"],
        ["x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
         "-out", cert, "-days", "2", "-extfile", config, "-extensions", "srv_ext"],
    ):
        subprocess.run(["openssl", *map(str, argv)], check=True, capture_output=True,
                       timeout=60)
    return ca, cert, key
