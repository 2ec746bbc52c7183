"""The FCC stand-in: looks like factory-configurator-client-example 4.10.0 from the outside.

Side effects: prints FCC's lines on stdout (flushed line by line), listens on a random TCP port
of one interface's IPv4 address, writes the injected items to its storage (see fcc_storage),
and with some --fault values ignores SIGTERM or never exits. Like the real program it waits for
a connection without a time limit; whoever starts it stops it.

As the real FCC: the port line (blank lines around it) is printed just before listen(backlog
1), so a client connecting at once can be refused (--listen-first closes that window); the
token is matched with its restart quirk; storage is erased on the first correctly framed
message; items are stored as they are read, before Verify; every completed exchange ends with
exit 0 whatever its ReturnStatus; a framing error (length 0, bad checksum, body cut short) gets
no answer and exit 1; `KpAlvSess: 1` keeps the session for the next message.
SIGINT and SIGTERM end it by the signal. Bytes left unread when it exits reset the connection.
Differences, and why: a peer silent for READ_TIMEOUT (10 minutes) in the middle of a message
is dropped and the next connection awaited (the real one would wait forever: tests need
bounds); more than MAX_GARBAGE bytes without a token drop the connection and a request longer
than MAX_REQUEST is a framing error (bounded memory); a bad checksum after a kept-alive
message ends it with exit 1 like any framing error, where the real FCC frees a buffer twice
and aborts; its encryption and CMAC are keyless stand-ins (see pep_agent.gateway.esfs); what the
checks leave out is listed in pep_agent.sim.bundle_checks.
"""

from __future__ import annotations

import datetime
import errno
import os
import secrets
import signal
import socket
import stat
import struct
import sys
import time
from pathlib import Path

from pep_agent.errors import NetworkError
from pep_agent.sim import bundle, bundle_checks, wire
from pep_agent.sim.bundle_device import Device
from pep_agent.sim.fcc_storage import Storage
from pep_agent.sim.harness import write_port_file
from pep_agent.system.netinfo import interface_ipv4

FAULTS = ("crash", "silent", "no-accept", "fail-after", "hang-after", "ignore-term",
          "pause-after-exchange")
EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_FAIL_AFTER = 3
PORT_TRIES = 200
# A connected peer that stops sending for this long is dropped, and FCC waits for the next one
# (the real FCC waits for ever; a pause of a minute or so is waited out as by the real one).
READ_TIMEOUT = 600.0
# The real FCC allocates whatever length a request announces; the stand-in takes up to this.
MAX_REQUEST = 64 * 1024 * 1024
RELEASE_WAIT = 300.0
_COLOURS = {"INFO": "\x1b[32m", "WARN": "\x1b[33m", "ERR": "\x1b[31m"}
_RESET = "\x1b[0m"


def _out(line: str) -> None:
    try:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()
    except BrokenPipeError:
        # Whoever read our output is gone: end as the C program would, killed by SIGPIPE.
        os._exit(128 + signal.SIGPIPE)


def _trace(level: str, group: str, message: str) -> None:
    _out(f"{_COLOURS[level]}[{level}][{group:<4}]: {message}{_RESET}")


def _wait_forever() -> None:
    while True:  # the real FCC never gives up either; the caller stops the process
        time.sleep(3600)


def _banner(storage: Storage) -> None:
    built = datetime.datetime.now().strftime("%b %d %Y %H:%M:%S")
    _out(f"Application ready. Build at: {built}")
    _out("PDMC version 4.13.0")
    _out("In single-partition mode.")
    _out(f"Creating path {storage.root}")
    storage.prepare()
    _trace("INFO", "fce", "Factory configurator client initialized")
    if storage.parsec:
        _trace("INFO", "fce", "PSA storage backed by Parsec")


def _parsec_socket_ok() -> bool:
    path = os.environ.get("PEP_SIM_PARSEC_SOCKET")
    if not path:
        return True
    try:
        return stat.S_ISSOCK(os.stat(path).st_mode)
    except OSError:
        return False


def _bind(address: str) -> tuple[socket.socket, int]:
    """Bind a random port in 1024-65534 of address, retrying ports that are taken."""
    for _ in range(PORT_TRIES):
        port = 1024 + secrets.randbelow(65534 - 1024 + 1)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.bind((address, port))
            return sock, port
        except OSError as e:
            sock.close()
            if e.errno not in (errno.EADDRINUSE, errno.EACCES):
                raise
    raise OSError(errno.EADDRINUSE, f"no free port after {PORT_TRIES} tries")


def _respond(conn: socket.socket, frame: bytes) -> None:
    try:
        conn.settimeout(READ_TIMEOUT)
        conn.sendall(frame)
    except OSError as e:
        _trace("ERR", "fcc", f"Failed sending response message to remote host ({e.strerror})")


class Session:
    """What lasts from one message to the next: storage, the device state, the session flag."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self.device = Device()
        # fcc_bundle_handler sets it only when a message's keys were all processed, so an error
        # in a later message of a kept-alive session leaves it open (factory_configurator_client.c).
        self.finished = True

    def taken(self, request: bundle.Bundle) -> None:
        """Store what a message took (all of it, or what came before its error)."""
        if request.complete:
            self.finished = not request.keep_alive
        self.storage.write(request.items)
        self.storage.write(request.backup_only, working=False)


def _process(session: Session, message: bytes, fault: str | None) -> tuple[int, bytes]:
    """Handle one framed request: (exit code if the session ends here or -1 to go on, response)."""
    if not session.storage.erased:
        session.storage.erase()
        _out("Storage is erased")
    sid = None
    warnings: list[str] = []
    csrs: list[tuple[str, bytes]] = []
    try:
        try:
            request = bundle_checks.process(message, session.device)
        except bundle.BundleError as e:
            if e.partial is not None:
                sid = e.partial.sid
                session.taken(e.partial)  # stored before the error, as by the real FCC
            raise
        sid = request.sid
        if fault == "fail-after":
            _trace("ERR", "fcc", "Failed to process data (simulated)")
            return EXIT_FAIL_AFTER, wire.frame_response(wire.CommStatus.FAILED_TO_PROCESS_DATA)
        session.taken(request)
        status, text = bundle.FccStatus.SUCCESS, bundle.SUCCESS_MESSAGE
        warnings, csrs = request.warnings, request.csrs
    except bundle.BundleError as e:
        _trace("ERR", "fcc", f"Factory flow failed: {e} (status {int(e.status)})")
        status, text, warnings = e.status, str(e), e.warnings
    except OSError as e:
        _trace("ERR", "esfs", f"Storage error: {e.strerror}")
        status, text = bundle.FccStatus.STORE_ERROR, "Internal storage error:"
    _out("Successfully processed comm message")
    reply = bundle.encode_response(status, text, sid, warnings, csrs)
    return (EXIT_OK if session.finished else -1), wire.frame_response(0, reply)


def _session(conn: socket.socket, session: Session, fault: str | None) -> int | None:
    """Serve one connection; the exit code, or None to wait for another connection."""
    reader = wire.StreamReader(wire.socket_recv(conn, timeout=READ_TIMEOUT))
    while True:
        try:
            message = wire.read_request(reader, MAX_REQUEST)
        except wire.ConnectionClosed as e:
            if e.before_token:
                return None  # a connection closed before a token does not end FCC
            _trace("ERR", "fcc", f"Failed getting factory message: {e}")
            return EXIT_ERROR
        except (TimeoutError, socket.timeout, ConnectionError):
            _trace("WARN", "fcc", "Connection lost while waiting for a message")
            return None
        except wire.WireError as e:
            if e.status == wire.CommStatus.ERROR:  # no token in MAX_GARBAGE bytes
                _trace("WARN", "fcc", f"Dropping the connection: {e}")
                return None
            # Like the real FCC: no answer to a message it could not frame, and exit 1.
            _trace("ERR", "fcc", f"Failed getting factory message: {e}")
            return EXIT_ERROR
        code, frame = _process(session, message, fault)
        _respond(conn, frame)
        if code >= 0:
            if reader.pending:
                # Bytes received and never read: closing then resets the connection, as the
                # kernel does when the real FCC exits with them unread.
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return code


def _after_success(fault: str | None) -> int:
    if fault == "hang-after":
        _out("Successfully completed factory flow")
        _wait_forever()
    if fault == "pause-after-exchange":
        release = os.environ.get("PEP_SIM_FCC_RELEASE")
        deadline = time.monotonic() + RELEASE_WAIT
        while time.monotonic() < deadline and not (release and Path(release).exists()):
            time.sleep(0.05)
    _out("Successfully completed factory flow")
    return EXIT_OK


def _main(parsec: bool, mcc_config: Path | None, fault: str | None, sync: bool,
          port_file: Path | None) -> int:
    if fault == "ignore-term":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    storage = Storage(parsec=parsec, mcc_config=mcc_config, cwd=Path.cwd(), sync=sync)
    try:
        _banner(storage)
    except OSError as e:
        _trace("ERR", "fce", f"Failed creating path {storage.root}: {e.strerror}")
        return EXIT_ERROR
    if fault == "crash":
        _trace("ERR", "fce", "Simulated crash")
        return EXIT_ERROR
    if parsec and not _parsec_socket_ok():
        _trace("ERR", "fce", "error getting available providers: Os { code: 2, kind: NotFound,"
                             " message: \"No such file or directory\" }")
        return EXIT_ERROR
    iface = os.environ.get("ETHERNET_LINUX_IFACE_NAME", "eth0")
    _out(f"Trying receive interface ({iface})")
    try:
        addresses = interface_ipv4(iface)
    except NetworkError as e:
        addresses, reason = [], str(e)
    else:
        reason = f"network interface {iface!r} has no IPv4 address"
    if not addresses:
        _trace("ERR", "fce", f"Failed to initialize network interface: {reason}")
        return EXIT_ERROR
    if fault == "silent":
        _wait_forever()
    try:
        listener, port = _bind(addresses[0])
    except OSError as e:
        _trace("ERR", "fce", f"Failed to open the server socket: {e.strerror}")
        return EXIT_ERROR
    # Printed before listen, as the real FCC does ("\n Client IP Address and Port :  %s\n").
    # One write, as the real FCC's one printf, a moment before it listens.
    _out(f"\n Client IP Address and Port :  {addresses[0]}:{port}\n")
    listener.listen(1)
    if port_file is not None:
        write_port_file(port_file, addresses[0], port)
    _out(" Client is waiting for incoming connection...")
    if fault == "no-accept":
        _wait_forever()
    session = Session(storage)
    with listener:
        while True:
            conn, _ = listener.accept()
            with conn:
                code = _session(conn, session, fault)
            if code is None:
                _out(" Client is waiting for incoming connection...")
                continue
            return _after_success(fault) if code == EXIT_OK else code


def run(*, parsec: bool, mcc_config: Path | None, fault: str | None, sync: bool = True,
        port_file: Path | None = None) -> int:
    """Act as FCC until one exchange is done; the exit status (0 after a completed exchange).

    sync=False acts as an FCC build that does not open its files O_SYNC (for crash tests);
    port_file is written with IP:PORT once FCC listens (see harness).
    """
    if fault is not None and fault not in FAULTS:
        print(f"unknown fault {fault!r}; known: {', '.join(FAULTS)}", file=sys.stderr)
        return EXIT_USAGE
    # SIGINT ends the real FCC by the signal (it has no handler), not with an exit code.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    return _main(parsec, mcc_config, fault, sync, port_file)
