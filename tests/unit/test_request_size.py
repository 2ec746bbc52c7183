"""The identity request's size: the pure count against the bytes the real client sends, and the
configuration check that refuses a request the pep server (node.js 10, 8 KiB) would refuse."""

from __future__ import annotations

import socketserver
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pep_agent.errors import ConfigError, SerialError
from pep_agent.exit_codes import Exit
from pep_agent.settings.config import Settings, load_settings
from pep_agent.settings.identity_query import identity_query
from pep_agent.settings.serials import SERIAL_MAX
from pep_agent.settings.urls import MAX_REQUEST_HEAD, request_size
from pep_agent.system.http import PepClient
from tests.loopback import LoopbackServer

ANSWER = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n"
          b"Connection: close\r\n\r\n{}")


class HeadRecorder(LoopbackServer):
    """Reads each request's line and headers as they arrive on the wire, answers `{}`."""

    def __init__(self, handler: type[socketserver.BaseRequestHandler], **options: Any) -> None:
        self.heads: list[bytes] = []
        super().__init__(handler, **options)


class RecordHead(socketserver.BaseRequestHandler):
    server: HeadRecorder

    def handle(self) -> None:
        self.request.settimeout(10)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = self.request.recv(65536)
            if not chunk:
                return
            data += chunk
        self.server.heads.append(data[:data.index(b"\r\n\r\n") + 4])
        self.request.sendall(ANSWER)


@pytest.fixture
def recorder(loopback: Callable[..., LoopbackServer]) -> HeadRecorder:
    return loopback(RecordHead, kind=HeadRecorder)


@pytest.mark.parametrize("prefix, serial, key", [
    ("", "GW-0001", "verification-key-does-not-exist"),
    ("/pep/api", "'" * SERIAL_MAX, "0a1b2c-3d4e5f-0a1b2c-3d4e5f/1a2b3c-35a4e900"),
    ("", "Line 3: gw=7/a,b+c", "x" * 300),
])
def test_request_size_is_what_the_client_sends(recorder: HeadRecorder, prefix: str,
                                               serial: str, key: str) -> None:
    base = f"http://127.0.0.1:{recorder.port}{prefix}"
    settings = Settings(hardware_version="Raspberry_Pi 4 Model B Rev 1.4 (ü)")
    query = identity_query(settings, serial, "192.168.100.200", 40123, key)
    PepClient(base, timeout=10).identity(query)
    assert len(recorder.heads) == 1
    assert request_size(base, "/v3/identity", query) == len(recorder.heads[0])


def test_default_port_is_left_out_of_host() -> None:
    query = {"serialNumber": "a"}
    assert request_size("http://pep:80", "/x", query) == request_size("http://pep", "/x", query)
    assert (request_size("http://pep:8080", "/x", query)
            == request_size("http://pep", "/x", query) + len(":8080"))
    assert request_size("https://pep:443", "/x", query) == request_size("https://pep", "/x", query)


def test_a_hardware_version_too_long_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        load_settings({"root": tmp_path}, {"PEP_HARDWARE_VERSION": "x" * 70_000})
    assert e.value.code == Exit.CONFIG
    assert "PEP_HARDWARE_VERSION has 70000 characters" in e.value.message
    assert str(MAX_REQUEST_HEAD) in e.value.message and "shorten PEP_HARDWARE_VERSION" in (
        e.value.hint or "")
    assert "\n" not in e.value.message and len(e.value.message) < 200


def test_the_limit_is_counted_with_the_longest_serial_ip_port_and_key(tmp_path: Path) -> None:
    """The largest hardware version accepted fits with every run-time value at its longest;
    one more byte is refused, naming the setting."""
    def fits(n: int) -> bool:
        try:
            load_settings({"root": tmp_path}, {"PEP_HARDWARE_VERSION": "h" * n})
        except ConfigError as e:
            assert "PEP_HARDWARE_VERSION" in e.message
            return False
        return True

    low, high = 0, MAX_REQUEST_HEAD
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (mid, high) if fits(mid) else (low, mid)
    settings = load_settings({"root": tmp_path}, {"PEP_HARDWARE_VERSION": "h" * low})
    longest = identity_query(settings, "'" * SERIAL_MAX, "255.255.255.255", 65535,
                                      "ffffff-ffffff-ffffff-ffffff/" + "f" * 16 + "-" + "f" * 16)
    assert request_size(settings.server_url, "/v3/identity", longest) == MAX_REQUEST_HEAD
    # A real run's request, with a short serial, is well inside.
    real = identity_query(settings, "GW-1", "10.0.0.2", 4000, "verification-key-does-not-exist")
    assert request_size(settings.server_url, "/v3/identity", real) < MAX_REQUEST_HEAD


def test_the_longest_other_setting_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="PEP_API_ADDRESS has"):
        load_settings({"root": tmp_path},
                      {"PEP_API_ADDRESS": "https://" + ".".join(["a" * 60] * 4) + "/"
                       + "p" * 8000})


def test_a_configured_serial_longer_than_the_rule_counts_and_is_named(tmp_path: Path) -> None:
    """pep-cli commands send any serial: one past the limit is refused, naming PEP_SERIAL and
    the serial-number rule (not the bytes to cut)."""
    load_settings({"root": tmp_path}, {"PEP_SERIAL": "s" * 1000})
    with pytest.raises(SerialError, match=r"from PEP_SERIAL has 9000 characters \(at most 64\)"):
        load_settings({"root": tmp_path}, {"PEP_SERIAL": "s" * 9000})
