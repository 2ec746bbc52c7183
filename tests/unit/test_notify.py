"""Notifier against real AF_UNIX datagram sockets, named by $NOTIFY_SOCKET as systemd does."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from pep_agent.system.notify import Notifier


@pytest.fixture
def listener(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(5)
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    yield sock
    sock.close()


def test_messages_reach_the_socket(listener: socket.socket) -> None:
    notifier = Notifier()
    assert notifier.enabled
    assert notifier.ready()
    assert listener.recv(4096) == b"READY=1"
    assert notifier.status("step fcc, attempt 2")
    assert listener.recv(4096) == b"STATUS=step fcc, attempt 2"
    assert notifier.stopping()
    assert listener.recv(4096) == b"STOPPING=1"


def test_status_stays_one_assignment(listener: socket.socket) -> None:
    Notifier().status("line one\nREADY=1")
    assert listener.recv(4096) == b"STATUS=line one READY=1"


def test_abstract_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"pep-agent-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert Notifier().ready()
        assert sock.recv(4096) == b"READY=1"


def test_no_socket_is_a_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    notifier = Notifier()
    assert not notifier.enabled
    assert not notifier.ready()


def test_disabled_sends_nothing(listener: socket.socket) -> None:
    assert not Notifier(enabled=False).ready()
    listener.settimeout(0.2)
    with pytest.raises(socket.timeout):
        listener.recv(4096)


def test_vanished_socket_does_not_raise(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "gone.sock"))
    assert not Notifier().status("hello")
