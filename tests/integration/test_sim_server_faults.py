"""The server's fault knobs, set at start (command line) and at run time (POST /_sim/faults)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.simprocs import SimFcc, SimServer, start_server

StartFcc = Callable[..., SimFcc]


def identity(server: SimServer, serial: str, fcc: SimFcc | None = None) -> requests.Response:
    ip, port = (fcc.ip, fcc.port) if fcc else ("127.0.0.1", 1)
    return server.get("/v3/identity", serialNumber=serial, ip=ip, port=port)


def listed(server: SimServer) -> list[str]:
    return [r["serialNumber"] for r in server.get("/v3/enrollment-ids").json()["results"]]


def test_start_time_knobs(tmp_path: Path, sim_fcc: StartFcc) -> None:
    server = start_server(tmp_path / "srv", fail_next=1, fail_status=502, drop_next=1,
                          fcc_timeout=7, fail_injection_next=1)
    try:
        knobs = server.faults()
        assert knobs == {"fail_next": 1, "fail_status": 502, "delay": 0.0, "answer_delay": 0.0,
                         "deploy_delay": 0.0, "drop_next": 1, "drop_after_next": 0,
                         "fail_injection_next": 1, "fcc_timeout": 7.0}
        fcc = sim_fcc()
        with pytest.raises(requests.ConnectionError):
            identity(server, "GW-1", fcc)
        assert identity(server, "GW-1", fcc).status_code == 502
        assert identity(server, "GW-1", fcc).status_code == 500
        assert identity(server, "GW-1", fcc).status_code == 200
        assert server.faults()["fail_next"] == 0
    finally:
        server.stop()


def test_fail_next_answers_before_creating_a_record(server: SimServer,
                                                   sim_fcc: StartFcc) -> None:
    knobs = server.set_faults(fail_next=2, fail_status=429)
    assert (knobs["fail_next"], knobs["fail_status"]) == (2, 429)
    fcc = sim_fcc()
    assert [identity(server, "GW-f", fcc).status_code for _ in range(2)] == [429, 429]
    assert listed(server) == []
    assert fcc.process.poll() is None  # FCC was never contacted
    assert identity(server, "GW-f", fcc).status_code == 200


def test_drop_next_closes_without_a_response(server: SimServer, sim_fcc: StartFcc) -> None:
    server.set_faults(drop_next=1)
    fcc = sim_fcc()
    params: dict[str, Any] = {"serialNumber": "GW-d", "ip": fcc.ip, "port": fcc.port}
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{server.url}/v3/identity", timeout=30, params=params)
    assert listed(server) == []
    assert identity(server, "GW-d", fcc).status_code == 200


def test_injection_failure_removes_the_record_and_spares_fcc(server: SimServer,
                                                            sim_fcc: StartFcc) -> None:
    server.set_faults(fail_injection_next=1)
    fcc = sim_fcc()
    reply = identity(server, "GW-i", fcc)
    assert reply.status_code == 500
    assert "factory-configurator-client" in reply.text
    assert server.get("/v3/enrollment-id", serialNumber="GW-i").status_code == 404
    assert fcc.process.poll() is None
    assert identity(server, "GW-i", fcc).status_code == 200
    assert fcc.wait_exit(30) == 0


def test_delay_holds_the_answer_back(server: SimServer) -> None:
    server.set_faults(delay=30)
    # The client gives up long before the delay ends: whatever the machine's load, the
    # server cannot have answered.
    params: dict[str, Any] = {"serialNumber": "GW-slow", "ip": "127.0.0.1", "port": 1}
    with pytest.raises(requests.ReadTimeout):
        requests.get(f"{server.url}/v3/identity", timeout=(10, 1), params=params)
    server.set_faults(delay=0)
    assert server.faults()["delay"] == 0
    # Other routes are not delayed.
    assert server.get("/v3/enrollment-ids").status_code == 200


def test_deploy_delay_leaves_an_undeployed_record_when_the_server_dies(
        tmp_path: Path, sim_fcc: StartFcc) -> None:
    server = start_server(tmp_path / "srv", deploy_delay=300)
    fcc = sim_fcc()
    params: dict[str, Any] = {"serialNumber": "GW-k", "ip": fcc.ip, "port": fcc.port}
    try:
        # The client gives up while the server holds the record; FCC has its credentials.
        with pytest.raises(requests.ReadTimeout):
            requests.get(f"{server.url}/v3/identity", timeout=(10, 3), params=params)
        assert fcc.wait_exit(30) == 0
    finally:
        server.stop()
    server = start_server(tmp_path / "srv")  # same records file
    try:
        assert server.faults()["deploy_delay"] == 0
        assert identity(server, "GW-k").status_code == 409
        assert server.get("/v3/enrollment-id", serialNumber="GW-k").status_code == 404
        assert listed(server) == []
    finally:
        server.stop()


def test_fcc_timeout_bounds_a_silent_fcc(server: SimServer, sim_fcc: StartFcc) -> None:
    server.set_faults(fcc_timeout=1)
    fcc = sim_fcc(fault="no-accept")
    reply = identity(server, "GW-t", fcc)
    assert reply.status_code == 500
    assert "no answer from FCC" in reply.text
    assert listed(server) == []


@pytest.mark.parametrize("body", ['{"fail_next": -1}', '{"nope": 1}', "[1]", "not json"])
def test_bad_knobs_are_400(server: SimServer, body: str) -> None:
    reply = requests.post(f"{server.url}/_sim/faults", data=body, timeout=30)
    assert reply.status_code == 400
    assert server.faults()["fail_next"] == 0
