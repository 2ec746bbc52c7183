"""The simulated pep server as a process: listen, run until a signal, clean up.

Side effects: listens on a TCP port, writes its SQLite records file (a temporary one, removed
at exit, when no file is given), writes the port file when asked, prints its address on stdout
and its records file on stderr. The requests themselves are api.py's.
"""

from __future__ import annotations

import os
import signal
import ssl
import sys
import tempfile
import threading
from pathlib import Path
from types import FrameType

from pep_agent.errors import UsageError
from pep_agent.sim import records
from pep_agent.sim.api import SimHTTPServer
from pep_agent.sim.faults import Faults
from pep_agent.sim.harness import write_port_file


def read_certificate(path: Path) -> bytes:
    """The DER bytes of a certificate file in DER or PEM; UsageError when it is neither."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise UsageError(f"cannot read {path}: {e.strerror or e}") from None
    if data.lstrip().startswith(b"-----BEGIN CERTIFICATE-----"):
        try:
            return ssl.PEM_cert_to_DER_cert(data.decode("ascii"))
        except (ValueError, UnicodeDecodeError):
            raise UsageError(f"{path}: not a readable PEM certificate") from None
    if not data.startswith(b"\x30") or len(data) < 64:
        raise UsageError(f"{path}: not a DER or PEM certificate",
                         hint="give the firmware-update certificate (update_default_resources)")
    return data


def _listen(host: str, port: int, store: records.Records, faults: Faults,
            update_auth_cert: bytes | None) -> SimHTTPServer:
    try:
        return SimHTTPServer((host, port), store, faults, update_auth_cert)
    except OSError as e:
        raise UsageError(f"cannot listen on {host}:{port}: {e.strerror or e}",
                         hint="choose another --port or --host") from None


def _run_until_signal(server: SimHTTPServer) -> None:
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {}
    # Signal handlers can only be set from the main thread; elsewhere the caller owns stopping.
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, on_signal)
    worker = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                              name="pep-sim-http", daemon=True)
    worker.start()
    try:
        # The wakeups only let a signal handler run; the loop ends on SIGTERM/SIGINT.
        while worker.is_alive() and not stop.wait(0.5):
            pass
    finally:
        server.shutdown()
        server.server_close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def serve(host: str, port: int, db: Path | None, *, fail_next: int = 0,
          fail_status: int = 503, delay: float = 0.0, drop_next: int = 0,
          fcc_timeout: float = 30.0, update_auth_cert: Path | None = None,
          port_file: Path | None = None) -> None:
    """Run the server until SIGTERM or SIGINT; prints its URL as the first stdout line.

    update_auth_cert: a certificate file (DER or PEM) sent to FCC as mbed.UpdateAuthCert.
    port_file: written with HOST:PORT once the server listens (see harness).
    """
    try:
        faults = Faults(fail_next=fail_next, fail_status=fail_status, delay=delay,
                        drop_next=drop_next, fcc_timeout=fcc_timeout)
    except ValueError as e:
        raise UsageError(str(e)) from None
    update_cert = None if update_auth_cert is None else read_certificate(update_auth_cert)
    temporary = db is None
    if db is None:
        fd, name = tempfile.mkstemp(prefix="pep-sim-", suffix=".sqlite")
        os.close(fd)
        db = Path(name)
    store = records.Records(db)
    try:
        server = _listen(host, port, store, faults, update_cert)
        print(f"pep sim server listening on http://{host}:{server.port}", flush=True)
        if port_file is not None:
            write_port_file(port_file, host, server.port)
        print(f"pep sim server: records in {db}", file=sys.stderr, flush=True)
        _run_until_signal(server)
    finally:
        store.close()
        if temporary:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{db}{suffix}").unlink(missing_ok=True)
    print("pep sim server stopped", file=sys.stderr, flush=True)
