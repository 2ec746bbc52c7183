"""The simulated pep server as a process, provisioning simulated FCCs over loopback."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import socketserver
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

from pep_agent.gateway import esfs
from pep_agent.sim import esfs_codec, harness
from tests.agentprocs import free_port
from tests.loopback import LoopbackServer
from tests.simprocs import SimFcc, SimServer, sim_argv, start_server

EID = re.compile(r"A-([0-9a-f]{2}:){31}[0-9a-f]{2}")
SERIAL = "LINE 7/GW+001,rev=2"
StartFcc = Callable[..., SimFcc]


def provision(server: SimServer, fcc: SimFcc, serial: str, **extra: Any) -> requests.Response:
    return server.get("/v3/identity", serialNumber=serial, ip=fcc.ip, port=fcc.port, **extra)


def test_identity_happy_path(server: SimServer, sim_fcc: StartFcc) -> None:
    fcc = sim_fcc()
    reply = provision(server, fcc, SERIAL, hardwareVersion="rpi4", verificationKey="vk-1")
    assert reply.status_code == 200, reply.text
    assert reply.headers["Content-Type"].startswith("application/json")
    body = reply.json()
    assert set(body) == {"serialNumber", "hardwareVersion", "radioConfig", "ledConfig",
                         "category", "apiAddress", "gatewayServicesAddress", "cloudAddress",
                         "deployed", "enrollmentID", "createdAt"}
    assert body["serialNumber"] == SERIAL
    assert body["hardwareVersion"] == "rpi4"
    assert (body["radioConfig"], body["ledConfig"], body["category"]) == ("00", "01",
                                                                          "production")
    assert body["cloudAddress"] == body["gatewayServicesAddress"] == \
        "https://gateways.us-east-1.mbedcloud.com"
    assert body["deployed"] is True
    assert isinstance(body["createdAt"], int) and body["createdAt"] > 1_600_000_000_000
    assert len(body["enrollmentID"]) == 97 and EID.fullmatch(body["enrollmentID"])
    # The call is synchronous: FCC has stored everything and ends successfully.
    assert fcc.wait_exit(30) == 0
    working = fcc.cwd / "pal" / "WORKING"
    assert esfs.check_pal(working.parent) == []
    assert esfs_codec.read_item(working, "CfgParam_mbed.EndpointName") == SERIAL.encode()
    assert esfs_codec.read_item(working, "CfgParam_mbed.SerialNumber") == SERIAL.encode()
    assert esfs_codec.read_item(working, "CfgParam_mbed.HardwareVersion") == b"rpi4"
    cert = esfs_codec.read_item(working, "Cert_mbed.BootstrapDeviceCert")
    digest = hashlib.sha256(cert).hexdigest()
    assert body["enrollmentID"] == "A-" + ":".join(digest[i:i + 2] for i in range(0, 64, 2))
    assert esfs_codec.read_item(working, "PrvKey_mbed.BootstrapDevicePrivateKey")[:1] == b"\x30"
    out = fcc.output.text()
    for line in ("Storage is erased", "Successfully processed comm message",
                 "Successfully completed factory flow"):
        assert line in out


def test_duplicate_serial_is_409_and_keeps_the_record(server: SimServer,
                                                      sim_fcc: StartFcc) -> None:
    first = provision(server, sim_fcc(), "GW-dup")
    assert first.status_code == 200
    again = provision(server, sim_fcc(), "GW-dup")
    assert again.status_code == 409
    assert again.text == "Identity with this serial number exists already!"
    assert again.headers["Content-Type"].startswith("text/plain")
    eid = server.get("/v3/enrollment-id", serialNumber="GW-dup")
    assert eid.text == first.json()["enrollmentID"]


def test_fcc_absent_gives_500_and_removes_the_record(server: SimServer,
                                                     sim_fcc: StartFcc) -> None:
    port = free_port()
    reply = server.get("/v3/identity", serialNumber="GW-x", ip="127.0.0.1", port=port)
    assert reply.status_code == 500
    assert f"ip=127.0.0.1 at port={port}" in reply.text
    assert server.get("/v3/enrollment-id", serialNumber="GW-x").status_code == 404
    # Removed, not hidden: the same serial provisions fine afterwards.
    assert provision(server, sim_fcc(), "GW-x").status_code == 200


class TakeEight(socketserver.BaseRequestHandler):
    """Reads FCC's first 8 bytes, then closes without an answer: the exchange fails."""

    def handle(self) -> None:
        self.request.settimeout(30)
        self.server.received.append(self.request.recv(8))


def test_port_defaults_to_7777(server: SimServer, loopback: Callable[..., LoopbackServer]
                               ) -> None:
    try:
        listener = loopback(TakeEight, port=7777)
    except OSError:
        pytest.skip("port 7777 is taken on this machine")
    listener.received = []
    reply = server.get("/v3/identity", serialNumber="GW-7", ip="127.0.0.1")
    assert listener.received == [b"mbedprov"]
    assert reply.status_code == 500
    assert "port=7777" in reply.text


def test_missing_ip_means_the_caller(server: SimServer, sim_fcc: StartFcc) -> None:
    fcc = sim_fcc()
    reply = server.get("/v3/identity", serialNumber="GW-self", port=fcc.port)
    assert reply.status_code == 200, reply.text
    assert fcc.wait_exit(30) == 0


def test_enrollment_id_and_verification_key(server: SimServer, sim_fcc: StartFcc) -> None:
    body = provision(server, sim_fcc(), "GW-k", verificationKey="fss-key-1").json()
    assert "verificationKey" not in body
    for path, expected in (("/v3/enrollment-id", body["enrollmentID"]),
                           ("/v3/verification-key", "fss-key-1")):
        found = server.get(path, serialNumber="GW-k")
        assert (found.status_code, found.text) == (200, expected)
        assert found.headers["Content-Type"].startswith("text/plain")
        missing = server.get(path, serialNumber="GW-none")
        assert (missing.status_code, missing.text) == (404, "Not found!")
        assert server.get(path).status_code == 400


def test_default_verification_key(server: SimServer, sim_fcc: StartFcc) -> None:
    assert provision(server, sim_fcc(), "GW-d").status_code == 200
    key = server.get("/v3/verification-key", serialNumber="GW-d")
    assert key.text == "verification-key-does-not-exist"


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed")
def test_curl_and_requests_name_the_same_record(server: SimServer,
                                                sim_fcc: StartFcc) -> None:
    fcc = sim_fcc()
    out = subprocess.run(
        ["curl", "-sS", "-G", "--data-urlencode", f"serialNumber={SERIAL}",
         "--data-urlencode", f"ip={fcc.ip}", "--data-urlencode", f"port={fcc.port}",
         f"{server.url}/v3/identity"],
        capture_output=True, text=True, timeout=60, check=True).stdout
    by_curl = json.loads(out)
    assert by_curl["serialNumber"] == SERIAL
    by_requests = server.get("/v3/enrollment-id", serialNumber=SERIAL)
    assert by_requests.text == by_curl["enrollmentID"]
    again = server.get("/v3/identity", serialNumber=SERIAL, ip="127.0.0.1", port=1)
    assert again.status_code == 409
    (listed,) = server.get("/v3/enrollment-ids").json()["results"]
    assert listed["serialNumber"] == SERIAL


def test_percent_in_serial_is_a_uri_error_without_record(server: SimServer) -> None:
    reply = server.get("/v3/identity", serialNumber="100%", ip="127.0.0.1", port=1)
    assert reply.status_code == 500
    assert "URIError" in reply.text
    assert server.get("/v3/enrollment-ids").json()["results"] == []


def test_escaped_reserved_character_survives_the_second_decode(server: SimServer,
                                                               sim_fcc: StartFcc) -> None:
    fcc = sim_fcc()
    body = provision(server, fcc, "a%2Fb%41").json()
    assert body["serialNumber"] == "a%2FbA"
    found = server.get("/v3/enrollment-id", serialNumber="a%2Fb%41")
    assert found.text == body["enrollmentID"]
    assert fcc.wait_exit(30) == 0
    assert esfs_codec.read_item(fcc.cwd / "pal/WORKING", "CfgParam_mbed.EndpointName") == b"a%2FbA"


def test_concurrent_requests_for_one_serial_have_one_winner(server: SimServer,
                                                            sim_fcc: StartFcc) -> None:
    fcc = sim_fcc()
    codes: list[int] = []
    lock = threading.Lock()

    def call() -> None:
        reply = requests.get(f"{server.url}/v3/identity", timeout=60,
                             params={"serialNumber": "GW-race", "ip": fcc.ip, "port": fcc.port})
        with lock:
            codes.append(reply.status_code)

    threads = [threading.Thread(target=call) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    assert sorted(codes) == [200] + [409] * 7


def test_unknown_route_is_404(server: SimServer) -> None:
    reply = server.get("/v2/identity")
    assert reply.status_code == 404
    assert "Cannot GET /v2/identity" in reply.text


def test_request_log_lists_requests_without_secrets(server: SimServer,
                                                    sim_fcc: StartFcc) -> None:
    assert provision(server, sim_fcc(), "GW-log", verificationKey="TOPSECRET").ok
    log = server.get("/v3/requestLog").json()
    identity = [e for e in log if e["url"].startswith("/v3/identity")]
    assert len(identity) == 1
    assert identity[0]["method"] == "GET" and identity[0]["time"].endswith("Z")
    assert "TOPSECRET" not in json.dumps(log)
    assert "TOPSECRET" not in server.output.text()


def test_records_persist_in_the_given_file(tmp_path: Path, sim_fcc: StartFcc) -> None:
    first = start_server(tmp_path / "srv")
    try:
        assert provision(first, sim_fcc(), "GW-p").status_code == 200
    finally:
        assert first.stop() == 0  # SIGTERM is a clean stop
    second = start_server(tmp_path / "srv")
    try:
        assert second.get("/v3/enrollment-id", serialNumber="GW-p").status_code == 200
    finally:
        second.stop()


def test_the_port_file_names_where_the_server_listens(server: SimServer, tmp_path: Path) -> None:
    written = harness.read_port_file(server.db.parent / "port")
    assert written is not None and server.url == f"http://{written[0]}:{written[1]}"
    assert server.get("/_sim/faults").status_code == 200
    # A second server on the same port cannot listen: it ends, and the harness says so at
    # once rather than wait out its deadline.
    with pytest.raises(RuntimeError, match="exited before it wrote"):
        harness.start(sim_argv("server", "--port", str(written[1]), "--db",
                               str(tmp_path / "second.sqlite")), tmp_path / "second.port",
                      timeout=60)
    assert not (tmp_path / "second.port").exists()


def test_a_connection_the_client_closes_is_said_to_close(server: SimServer) -> None:
    """node.js answers "Connection: close" with its own, and keeps a connection alive
    otherwise; so does the simulator."""
    closing = requests.get(server.url + "/v3/enrollment-ids", headers={"Connection": "close"},
                           timeout=30)
    assert closing.status_code == 200 and closing.headers.get("Connection") == "close"
    kept = requests.get(server.url + "/v3/enrollment-ids", timeout=30)
    assert kept.status_code == 200 and "Connection" not in kept.headers
