"""Notifier against real AF_UNIX datagram sockets."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from pep_agent.system.notify import Notifier


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(5)
    yield sock, str(path)
    sock.close()


def test_messages_reach_the_socket(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    notifier = Notifier(path)
    assert notifier.ready()
    assert sock.recv(4096) == b"READY=1"
    assert notifier.status("step fcc, attempt 2")
    assert sock.recv(4096) == b"STATUS=step fcc, attempt 2"
    assert notifier.stopping()
    assert sock.recv(4096) == b"STOPPING=1"


def test_status_stays_one_assignment(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    Notifier(path).status("line one\nREADY=1")
    assert sock.recv(4096) == b"STATUS=line one READY=1"


def test_reads_notify_socket_from_environment(
        listener: tuple[socket.socket, str], monkeypatch: pytest.MonkeyPatch) -> None:
    sock, path = listener
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    assert Notifier().ready()
    assert sock.recv(4096) == b"READY=1"


def test_abstract_socket() -> None:
    name = f"pep-agent-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        assert Notifier("@" + name).ready()
        assert sock.recv(4096) == b"READY=1"


def test_no_socket_is_a_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    notifier = Notifier()
    assert not notifier.enabled
    assert not notifier.ready()


def test_vanished_socket_does_not_raise(tmp_path: Path) -> None:
    assert not Notifier(str(tmp_path / "gone.sock")).status("hello")
