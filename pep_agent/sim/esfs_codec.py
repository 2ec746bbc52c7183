"""The simulator's version of FCC's ESFS file format (gateway/esfs.py describes the format):
header, name, nonce and sizes are the real ones, but the simulator has no device key, so its
"encryption" is a keyless SHA-256 keystream and its "CMAC" a truncated SHA-256. They hide
nothing; they only keep the bytes and sizes of the real format.

Side effects: `read_item` reads a file.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from pep_agent.gateway.esfs import (
    CMAC_SIZE,
    COUNT,
    FACTORY_MODE,
    FIXED,
    META,
    MODE_ENCRYPTED,
    NONCE_SIZE,
    VERSION,
    EsfsError,
    file_name,
    parse_header,
)


def _keystream(nonce: bytes, size: int) -> bytes:
    blocks = (hashlib.sha256(nonce + i.to_bytes(4, "big")).digest() for i in range(size // 32 + 1))
    return b"".join(blocks)[:size]


def _xor(data: bytes, stream: bytes) -> bytes:
    return bytes(a ^ b for a, b in zip(data, stream))


def encode(typed: str, data: bytes, nonce: bytes, mode: int = FACTORY_MODE,
           metadata: tuple[tuple[int, bytes], ...] = ()) -> bytes:
    """An ESFS file holding data under typed name, with metadata given as (type, value) (KCM
    gives a chain's first certificate the chain length); the simulator's stand-in encryption
    and CMAC: see the module docstring."""
    name = typed.encode()
    if len(nonce) != NONCE_SIZE:
        raise ValueError(f"the nonce is {NONCE_SIZE} bytes")
    head = FIXED.pack(VERSION, mode, len(name)) + name
    if mode & MODE_ENCRYPTED:
        head += nonce
    position = len(head) + COUNT.size + len(metadata) * META.size
    head += COUNT.pack(len(metadata))
    values = b""
    for kind, value in metadata:
        head += META.pack(kind, len(value), position + len(values))
        values += value
    data = values + data
    if mode & MODE_ENCRYPTED:
        data = _xor(data, _keystream(nonce, len(data)))
    body = head + data
    return body + hashlib.sha256(body).digest()[:CMAC_SIZE]


def decode(blob: bytes) -> tuple[str, bytes]:
    """(typed name, data) of a file `encode` wrote; EsfsError if its trailer does not match."""
    header = parse_header(blob)
    body = blob[:-CMAC_SIZE]
    if hashlib.sha256(body).digest()[:CMAC_SIZE] != blob[-CMAC_SIZE:]:
        raise EsfsError("trailer does not match (not written by the simulator, or damaged)")
    data = body[header.header_size + header.metadata_size:]
    if header.mode & MODE_ENCRYPTED:
        data = _xor(data, _keystream(header.nonce, len(data)))
    return header.name, data


def read_item(folder: Path, typed: str) -> bytes:
    """The data of an item in a WORKING or BACKUP folder the simulator wrote."""
    name, data = decode((folder / file_name(typed)).read_bytes())
    if name != typed:
        raise EsfsError(f"{file_name(typed)} holds another item")
    return data
