"""The simulated pep server's log: one line per request, and a client that goes away is one
line, not a traceback."""

from __future__ import annotations

import socket
import struct
from pathlib import Path

import pytest
import requests

from tests.simprocs import start_fcc, start_server

TIMEOUT = 60.0


def test_a_client_gone_mid_injection_is_one_line(tmp_path: Path) -> None:
    server = start_server(tmp_path / "server", deploy_delay=3)
    fcc = start_fcc(tmp_path / "fcc")
    try:
        # The client gives up while the server holds the injected record undeployed: the
        # answer then goes to a closed connection.
        with pytest.raises(requests.exceptions.ReadTimeout):
            requests.get(f"{server.url}/v3/identity", timeout=(5, 1), params={
                "ip": fcc.ip, "port": str(fcc.port), "serialNumber": "SIM-GONE"})
        seen = server.output.wait_for("went away|Exception occurred|Traceback", TIMEOUT)
        assert seen is not None, server.output.text()
        # The server goes on answering.
        assert server.get("/v3/enrollment-id", serialNumber="SIM-GONE").status_code == 200
        assert server.output.wait_for("GET /v3/enrollment-id", TIMEOUT)
    finally:
        fcc.stop()
        server.stop()
    lines = server.output.lines
    text = "\n".join(lines)
    assert "Traceback" not in text and "Exception occurred" not in text, text
    gone = [line for line in lines if "went away" in line]
    assert len(gone) == 1 and "the client went away before the answer" in gone[0], text
    # Each request is logged once.
    identity = [line for line in lines if '"GET /v3/identity?' in line]
    assert len(identity) == 1, text
    assert identity[0].endswith('HTTP/1.1" 200 -'), text


def test_a_client_reset_mid_request_is_one_line(tmp_path: Path) -> None:
    server = start_server(tmp_path / "server")
    try:
        host, port = server.url.rsplit("/", 1)[1].split(":")
        with socket.create_connection((host, int(port)), timeout=TIMEOUT) as sock:
            sock.sendall(b"GET /v3/enrollment-id?serialNumber=X HTTP/1.1\r\nHost: x\r\n")
            # Closed with a reset (linger 0) while the server reads the headers.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        seen = server.output.wait_for("went away|Exception occurred|Traceback", TIMEOUT)
        assert seen is not None, server.output.text()
        assert server.get("/v3/enrollment-id", serialNumber="X").status_code == 404
    finally:
        server.stop()
    text = server.output.text()
    assert "Traceback" not in text and "Exception occurred" not in text, text
    assert "127.0.0.1 the client went away (ConnectionResetError)" in text, text
