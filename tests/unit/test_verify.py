"""verify() and read_status() against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest

from pep_agent.errors import VerificationError
from pep_agent.system.edgecore import read_status
from pep_agent.verify import verify
from tests.edgestatus import ScriptedStatus, scripted_status
from tests.fakes import FakeClock


@pytest.fixture
def edge() -> Iterator[ScriptedStatus]:
    with scripted_status() as scripted:
        yield scripted


def status(state: str, name: str = "SN-1", **more: str) -> dict[str, Any]:
    return {"account-id": "acc", "edge-version": "0.21", "endpoint-name": name,
            "internal-id": "017f", "lwm2m-server-uri": "coaps://lwm2m", "status": state, **more}


def test_waits_until_connected(edge: ScriptedStatus) -> None:
    edge.replies = [status("undefined"), status("connecting"), status("connected")]
    clock = FakeClock()
    result = verify(status_url=edge.url, serial="SN-1", deadline_s=60, interval=2,
                    sleep=clock.sleep, clock=clock)
    assert result == status("connected")
    assert edge.requests == 3
    assert clock.sleeps == [2, 2]


def test_timeout_names_the_last_status(edge: ScriptedStatus) -> None:
    edge.replies = [status("connecting")]
    clock = FakeClock()
    with pytest.raises(VerificationError, match="edge-core status stayed 'connecting'"):
        verify(status_url=edge.url, serial="SN-1", deadline_s=10, interval=2,
               sleep=clock.sleep, clock=clock)
    assert edge.requests == 6  # t = 0, 2, 4, 6, 8, 10
    assert clock.t == 10


def test_endpoint_name_mismatch(edge: ScriptedStatus) -> None:
    edge.replies = [status("connected", name="OTHER")]
    clock = FakeClock()
    with pytest.raises(VerificationError,
                       match="endpoint-name 'OTHER' does not match serial 'SN-1'"):
        verify(status_url=edge.url, serial="SN-1", deadline_s=4, interval=2,
               sleep=clock.sleep, clock=clock)


def test_error_status_carries_its_description(edge: ScriptedStatus) -> None:
    edge.replies = [status("error", error_code="-3", error_description="bad-request")]
    clock = FakeClock()
    with pytest.raises(VerificationError, match=r"stayed 'error'.*\(-3 bad-request\)"):
        verify(status_url=edge.url, serial="SN-1", deadline_s=2, interval=2,
               sleep=clock.sleep, clock=clock)


def test_garbage_and_http_errors_are_retried(edge: ScriptedStatus) -> None:
    edge.replies = ["<html>starting</html>", 503, status("connected")]
    clock = FakeClock()
    assert verify(status_url=edge.url, serial="SN-1", deadline_s=30, interval=1,
                  sleep=clock.sleep, clock=clock)["status"] == "connected"
    assert edge.requests == 3


def test_endpoint_not_answering() -> None:
    with socket.socket() as s:  # a port that was free a moment ago and is closed now
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    clock = FakeClock()
    with pytest.raises(VerificationError, match="edge-core status endpoint not answering"):
        verify(status_url=f"http://127.0.0.1:{port}/status", serial="SN-1", deadline_s=4,
               interval=2, sleep=clock.sleep, clock=clock)


def test_bounded_even_if_the_clock_stands_still() -> None:
    calls: list[str] = []

    def read(url: str, timeout: float) -> dict[str, Any]:
        calls.append(url)
        return status("connecting")

    with pytest.raises(VerificationError):
        verify(status_url="http://127.0.0.1:1/status", serial="SN-1", deadline_s=10,
               interval=2, sleep=lambda s: None, clock=lambda: 0.0, read=read)
    assert len(calls) == 6


def test_read_status_rejects_non_json(edge: ScriptedStatus) -> None:
    edge.replies = ["not json"]
    with pytest.raises(VerificationError, match="did not answer JSON"):
        read_status(edge.url, timeout=5)
    edge.replies = ['["a", "list"]']
    edge.requests = 0
    with pytest.raises(VerificationError, match="JSON object"):
        read_status(edge.url, timeout=5)


def test_read_status_http_error(edge: ScriptedStatus) -> None:
    edge.replies = [500]
    with pytest.raises(VerificationError, match="answered HTTP 500"):
        read_status(edge.url, timeout=5)


def test_read_status_ignores_proxy_environment(
        edge: ScriptedStatus, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{dead}")
    edge.replies = [status("connected")]
    assert read_status(edge.url, timeout=5)["status"] == "connected"


def test_read_status_rejects_other_schemes() -> None:
    with pytest.raises(VerificationError, match="not http"):
        read_status("file:///etc/hostname", timeout=1)
