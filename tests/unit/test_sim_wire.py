"""Framing of the factory protocol: layout, token scan, checksums, truncation."""

from __future__ import annotations

import hashlib
import io
import socket
import struct
import time

import pytest

from pep_agent.sim import wire


def reader_of(data: bytes, chunk: int = 65536) -> wire.StreamReader:
    stream = io.BytesIO(data)

    def recv(n: int) -> bytes:
        return stream.read(min(n, chunk))

    return wire.StreamReader(recv)


def test_request_layout_is_token_le_length_message_sha256() -> None:
    message = b"\xa1\x61a\x01"
    frame = wire.frame_request(message)
    assert frame[:8] == b"mbedprov"
    assert struct.unpack("<I", frame[8:12])[0] == len(message)
    assert frame[12:12 + len(message)] == message
    assert frame[12 + len(message):] == hashlib.sha256(message).digest()


@pytest.mark.parametrize("chunk", [1, 3, 65536])
def test_request_round_trip_whatever_the_read_sizes(chunk: int) -> None:
    message = bytes(range(256)) * 10
    assert wire.read_request(reader_of(wire.frame_request(message), chunk)) == message


@pytest.mark.parametrize("garbage", [b"", b"\x00" * 100, b"mbedpr!", b"mbmbedpromb!", b"x" * 70000])
def test_token_is_found_after_garbage(garbage: bytes) -> None:
    reader = reader_of(garbage + wire.frame_request(b"hello"), chunk=5)
    assert wire.read_request(reader) == b"hello"


@pytest.mark.parametrize("garbage", [b"m", b"mbedpro"])
def test_fcc_misses_a_token_right_after_a_partial_match(garbage: bytes) -> None:
    # The real FCC restarts on a mismatch without re-testing that byte: "mmbedprov" is missed.
    reader = reader_of(garbage + wire.frame_request(b"hello"), chunk=5)
    with pytest.raises(wire.ConnectionClosed):
        wire.read_request(reader)
    # The factory tool's reader (responses) finds it.
    assert reader_of(garbage + wire.TOKEN, chunk=5).scan_token() == len(garbage)


def test_scan_reports_how_much_garbage_it_skipped() -> None:
    reader = reader_of(b"0123456789" + wire.TOKEN, chunk=4)
    assert reader.scan_token() == 10


def test_checksum_mismatch_is_an_inconsistent_signature() -> None:
    frame = bytearray(wire.frame_request(b"payload"))
    frame[-1] ^= 0x01
    with pytest.raises(wire.WireError) as err:
        wire.read_request(reader_of(bytes(frame)))
    assert err.value.status == wire.CommStatus.INCONSISTENT_MESSAGE_SIGNATURE


def test_corrupted_message_byte_is_caught_by_the_checksum() -> None:
    frame = bytearray(wire.frame_request(b"payload"))
    frame[13] ^= 0x80
    with pytest.raises(wire.WireError):
        wire.read_request(reader_of(bytes(frame)))


@pytest.mark.parametrize("size", [0, wire.MAX_MESSAGE + 1])
def test_length_out_of_range_is_rejected(size: int) -> None:
    data = wire.TOKEN + struct.pack("<I", size) + b"x" * 64
    with pytest.raises(wire.WireError) as err:
        wire.read_request(reader_of(data))
    assert err.value.status == wire.CommStatus.FAILED_TO_READ_MESSAGE_SIZE


def test_close_before_token_is_distinguished_from_a_truncated_message() -> None:
    with pytest.raises(wire.ConnectionClosed) as before:
        wire.read_request(reader_of(b"GET / HTTP/1.0\r\n\r\n"))
    assert before.value.before_token
    frame = wire.frame_request(b"payload")
    with pytest.raises(wire.ConnectionClosed) as during:
        wire.read_request(reader_of(frame[:-5]))
    assert not during.value.before_token


def test_too_much_garbage_gives_up() -> None:
    reader = reader_of(b"z" * 5000)
    with pytest.raises(wire.WireError) as err:
        reader.scan_token(limit=1000)
    assert not isinstance(err.value, wire.ConnectionClosed)


def test_success_response_round_trip() -> None:
    frame = wire.frame_response(0, b"\xa0")
    assert frame[8:12] == b"\x00\x00\x00\x00"
    assert wire.read_response(reader_of(frame)) == (0, b"\xa0")


def test_error_response_has_no_body() -> None:
    frame = wire.frame_response(wire.CommStatus.FAILED_TO_PROCESS_DATA)
    assert len(frame) == 12
    assert wire.read_response(reader_of(frame)) == (9, None)


def test_socket_recv_refuses_to_wait_past_the_deadline() -> None:
    left, right = socket.socketpair()
    with left, right:
        right.sendall(b"data")
        recv = wire.socket_recv(left, timeout=5.0, deadline=time.monotonic() - 1)
        with pytest.raises(TimeoutError):
            recv(4)
        assert wire.socket_recv(left, timeout=5.0)(4) == b"data"
