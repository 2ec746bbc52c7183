"""Framing of the factory-tool ⇄ FCC TCP protocol. No side effects beyond the socket it is given.

A request is the token, a little-endian uint32 length, the CBOR message and its SHA-256; a
response is the token, a uint32 status and, when the status is 0, the same length/message/
checksum triple. Status values are the comm-layer codes of the real FCC; errors inside the
bundle travel in the CBOR response instead (see bundle.py).
"""

from __future__ import annotations

import hashlib
import socket
import struct
import time
from collections.abc import Callable
from enum import IntEnum

TOKEN = b"mbedprov"
CHECKSUM_SIZE = 32
# Real bundles are a few kilobytes; the cap keeps a corrupt length from allocating gigabytes.
MAX_MESSAGE = 4 * 1024 * 1024
# How much noise may precede a token before the reader gives up on the connection.
MAX_GARBAGE = 1024 * 1024

_U32 = struct.Struct("<I")


class CommStatus(IntEnum):
    """The comm-layer status of a response (ftcd_comm_status_e of the real FCC)."""

    SUCCESS = 0
    ERROR = 1
    INVALID_PARAMETER = 2
    MEMORY_OUT = 3
    FAILED_TO_READ_MESSAGE_SIZE = 4
    FAILED_TO_READ_MESSAGE_BYTES = 5
    FAILED_TO_READ_MESSAGE_SIGNATURE = 6
    FAILED_TO_CALCULATE_MESSAGE_SIGNATURE = 7
    INCONSISTENT_MESSAGE_SIGNATURE = 8
    FAILED_TO_PROCESS_DATA = 9
    FAILED_TO_PROCESS_MESSAGE = 10
    FAILED_TO_SEND_VALID_RESPONSE = 11
    NETWORK_TIMEOUT = 12
    NETWORK_CONNECTION_ERROR = 13
    INTERNAL_ERROR = 14


class WireError(Exception):
    """A framing error; `status` is what the receiver answers with."""

    def __init__(self, message: str, status: CommStatus = CommStatus.ERROR) -> None:
        super().__init__(message)
        self.status = status


class ConnectionClosed(WireError):
    """The peer closed the connection; `before_token` when no token had arrived yet."""

    def __init__(self, message: str, *, before_token: bool) -> None:
        super().__init__(message, CommStatus.NETWORK_CONNECTION_ERROR)
        self.before_token = before_token


def checksum(message: bytes) -> bytes:
    return hashlib.sha256(message).digest()


def frame_request(message: bytes) -> bytes:
    """token | len | message | sha256(message)."""
    return TOKEN + _U32.pack(len(message)) + message + checksum(message)


def frame_response(status: int, message: bytes | None = None) -> bytes:
    """token | status [| len | message | sha256(message)] (the tail only when status is 0)."""
    head = TOKEN + _U32.pack(status)
    if status != 0 or message is None:
        return head
    return head + _U32.pack(len(message)) + message + checksum(message)


class StreamReader:
    """Buffered reads over a recv-like callable that returns b"" at end of stream."""

    def __init__(self, recv: Callable[[int], bytes]) -> None:
        self._recv = recv
        self._buf = b""

    @property
    def pending(self) -> int:
        """How many received bytes were not consumed yet."""
        return len(self._buf)

    def _fill(self) -> bool:
        chunk = self._recv(65536)
        self._buf += chunk
        return bool(chunk)

    def exact(self, n: int, what: str) -> bytes:
        while len(self._buf) < n:
            if not self._fill():
                raise ConnectionClosed(f"connection closed while reading {what}",
                                       before_token=False)
        out, self._buf = self._buf[:n], self._buf[n:]
        return out

    def scan_token(self, limit: int = MAX_GARBAGE) -> int:
        """Consume input up to and including the token; returns how many bytes preceded it."""
        skipped = 0
        while True:
            at = self._buf.find(TOKEN)
            if at >= 0:
                self._buf = self._buf[at + len(TOKEN):]
                return skipped + at
            # Keep a tail that may be the start of a token split across reads.
            keep = len(TOKEN) - 1
            if len(self._buf) > keep:
                skipped += len(self._buf) - keep
                self._buf = self._buf[-keep:]
            if skipped > limit:
                raise WireError(f"no token in the first {limit} bytes", CommStatus.ERROR)
            if not self._fill():
                raise ConnectionClosed("connection closed before a token", before_token=True)

    def scan_token_as_fcc(self, limit: int = MAX_GARBAGE) -> int:
        """scan_token as the real FCC matches: on a mismatch it restarts at the token's first
        byte without testing the mismatching byte again, so "mmbedprov" is not recognised
        (ftcd_comm_socket.cpp). Returns how many bytes preceded the token."""
        matched = 0
        consumed = 0
        while True:
            for index, byte in enumerate(self._buf):
                matched = matched + 1 if byte == TOKEN[matched] else 0
                if matched == len(TOKEN):
                    self._buf = self._buf[index + 1:]
                    return consumed + index + 1 - len(TOKEN)
            consumed += len(self._buf)
            self._buf = b""
            if consumed > limit:
                raise WireError(f"no token in the first {limit} bytes", CommStatus.ERROR)
            if not self._fill():
                raise ConnectionClosed("connection closed before a token", before_token=True)

    def u32(self, what: str) -> int:
        value: int = _U32.unpack(self.exact(4, what))[0]
        return value

    def checked_message(self, max_size: int = MAX_MESSAGE) -> bytes:
        """length | message | checksum, after the token (and status) were consumed."""
        size = self.u32("the message length")
        if size == 0 or size > max_size:
            raise WireError(f"message length {size} out of range",
                            CommStatus.FAILED_TO_READ_MESSAGE_SIZE)
        message = self.exact(size, "the message")
        digest = self.exact(CHECKSUM_SIZE, "the message checksum")
        if digest != checksum(message):
            raise WireError("message checksum mismatch", CommStatus.INCONSISTENT_MESSAGE_SIGNATURE)
        return message


def read_request(reader: StreamReader, max_size: int = MAX_MESSAGE) -> bytes:
    """The CBOR message of the next request on the stream (token found as the real FCC does)."""
    reader.scan_token_as_fcc()
    return reader.checked_message(max_size)


def read_response(reader: StreamReader, max_size: int = MAX_MESSAGE) -> tuple[int, bytes | None]:
    """(status, CBOR message or None when the status is not 0) of the next response."""
    reader.scan_token()
    status = reader.u32("the response status")
    if status != 0:
        return status, None
    return 0, reader.checked_message(max_size)


def socket_recv(sock: socket.socket, *, timeout: float,
                deadline: float | None = None) -> Callable[[int], bytes]:
    """A recv for StreamReader: each call waits at most `timeout`, and never past `deadline`."""

    def recv(n: int) -> bytes:
        wait = timeout
        if deadline is not None:
            wait = min(wait, deadline - time.monotonic())
            if wait <= 0:
                raise TimeoutError("deadline passed")
        sock.settimeout(wait)
        return sock.recv(n)

    return recv
