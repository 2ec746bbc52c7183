"""FCC's on-disk credential storage (ESFS under ./pal, or Parsec's its/ + pst/): names, format,
checks. Side effects: none beyond reading files (check_pal, check_parsec, read_item).

Layout of factory-configurator-client 4.10.0 without Parsec: `pal/flashSim` (8,192 bytes of
root-of-trust data) and every item twice, `pal/BACKUP/<name>` and `pal/WORKING/<name>`, where
<name> is 8 characters encoding the first 6 bytes of the SHA-256 of the typed item name (the
KCM prefix followed by the item name, e.g. `CfgParam_mbed.EndpointName` -> `sB1fRsia`) in
base64 with `#` and `_` for the last two digits. Each file: version u16 LE (1), mode u16
(0x0100 encrypted, 0x0200 factory item), name length u16, the typed name in plain text, an
8-byte nonce when encrypted, a u16 count of metadata entries and their 6-byte headers
(type, length, position: u16 each), the metadata values and data (AES-CTR under the device key),
then a 16-byte AES-CMAC of everything before it.

`encode` and `decode` are the simulator's version of that format: header, name, nonce and
sizes are the real ones, but the simulator has no device key, so its "encryption" is a keyless
SHA-256 keystream and its "CMAC" a truncated SHA-256. They hide nothing; they only keep the
bytes and sizes of the real format. Files the real FCC wrote cannot be decoded here (the key
stays in the device), only checked by their headers.
"""

from __future__ import annotations

import base64
import hashlib
import struct
from dataclasses import dataclass
from pathlib import Path

VERSION = 1
MODE_ENCRYPTED = 0x0100
MODE_FACTORY = 0x0200
FACTORY_MODE = MODE_ENCRYPTED | MODE_FACTORY
NONCE_SIZE = 8
CMAC_SIZE = 16
FLASHSIM_SIZE = 8192
NAME_SIZE = 8

# KCM's prefixes (storage_items.h): the typed name is prefix + item name.
CERT_PREFIX = "Cert_"
PRIVATE_KEY_PREFIX = "PrvKey_"
PUBLIC_KEY_PREFIX = "PubKey_"
CONFIG_PREFIX = "CfgParam_"

# What a gateway cannot start without: its name and its bootstrap credentials.
REQUIRED = (
    CONFIG_PREFIX + "mbed.EndpointName",
    CERT_PREFIX + "mbed.BootstrapServerCACert",
    CERT_PREFIX + "mbed.BootstrapDeviceCert",
    PRIVATE_KEY_PREFIX + "mbed.BootstrapDevicePrivateKey",
)

_FIXED = struct.Struct("<HHH")
_COUNT = struct.Struct("<H")
_META = struct.Struct("<HHH")
# esfs_file_name.c's base64 digits: the standard ones with '#' and '_' for '+' and '/'.
_DIGITS = bytes.maketrans(b"+/", b"#_")


class EsfsError(ValueError):
    """A blob that is not an ESFS file; the message names no contents."""


@dataclass(frozen=True)
class Header:
    version: int
    mode: int
    name: str
    nonce: bytes
    header_size: int  # everything before the metadata values and data
    metadata_size: int  # the metadata values' total length

    def data_size(self, file_size: int) -> int:
        """Length of the (encrypted) data in a file of file_size bytes; negative if too short."""
        return file_size - self.header_size - self.metadata_size - CMAC_SIZE


def typed_name(group: str, name: str, key_type: str | None = None) -> str:
    """The name KCM stores an item of a bundle group (Keys, Certificates, ConfigParams) under."""
    if group == "Keys":
        return (PUBLIC_KEY_PREFIX if key_type == "ECCPublic" else PRIVATE_KEY_PREFIX) + name
    if group in ("Certificates", "CertificateChains"):
        return CERT_PREFIX + name
    return CONFIG_PREFIX + name


def file_name(typed: str) -> str:
    """The 8-character file name ESFS stores the typed name under."""
    digest = hashlib.sha256(typed.encode()).digest()[: NAME_SIZE * 6 // 8]
    return base64.b64encode(digest).translate(_DIGITS).decode()


def parse_header(blob: bytes) -> Header:
    """The header of an ESFS file; EsfsError if blob is too short for it or not version 1."""
    if len(blob) < _FIXED.size:
        raise EsfsError(f"{len(blob)} bytes: shorter than the ESFS header")
    version, mode, name_length = _FIXED.unpack_from(blob)
    if version != VERSION:
        raise EsfsError(f"ESFS version {version}, expected {VERSION}")
    offset = _FIXED.size
    name_bytes = blob[offset:offset + name_length]
    offset += name_length
    nonce_size = NONCE_SIZE if mode & MODE_ENCRYPTED else 0
    nonce = blob[offset:offset + nonce_size]
    offset += nonce_size
    if len(blob) < offset + _COUNT.size:
        raise EsfsError(f"name length {name_length} does not fit a {len(blob)}-byte file")
    (count,) = _COUNT.unpack_from(blob, offset)
    offset += _COUNT.size
    if len(blob) < offset + count * _META.size:
        raise EsfsError(f"{count} metadata entries do not fit a {len(blob)}-byte file")
    metadata_size = sum(_META.unpack_from(blob, offset + i * _META.size)[1] for i in range(count))
    offset += count * _META.size
    try:
        name = name_bytes.decode()
    except UnicodeDecodeError:
        raise EsfsError("the item name is not UTF-8") from None
    header = Header(version, mode, name, nonce, offset, metadata_size)
    if header.data_size(len(blob)) < 0:
        raise EsfsError(f"header and trailer do not fit a {len(blob)}-byte file")
    return header


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
    head = _FIXED.pack(VERSION, mode, len(name)) + name
    if mode & MODE_ENCRYPTED:
        head += nonce
    position = len(head) + _COUNT.size + len(metadata) * _META.size
    head += _COUNT.pack(len(metadata))
    values = b""
    for kind, value in metadata:
        head += _META.pack(kind, len(value), position + len(values))
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


def _file_problems(path: Path, label: str) -> tuple[list[str], str | None]:
    """Problems of one ESFS file, and the typed name it holds (None if unreadable)."""
    try:
        blob = path.read_bytes()
    except OSError as e:
        return [f"{label}: cannot be read ({e.strerror})"], None
    if not blob:
        return [f"{label}: empty"], None
    try:
        header = parse_header(blob)
    except EsfsError as e:
        return [f"{label}: {e}"], None
    if file_name(header.name) != path.name:
        return [f"{label}: the item name in its header does not hash to its file name"], None
    return [], header.name


def _folder(pal: Path, sub: str, problems: list[str]) -> dict[str, str]:
    """{file name: typed name} of the readable files in pal/sub; problems appended."""
    folder = pal / sub
    if not folder.is_dir():
        problems.append(f"{sub}: missing")
        return {}
    items: dict[str, str] = {}
    for path in sorted(folder.iterdir()):
        label = f"{sub}/{path.name}"
        if not path.is_file() or path.is_symlink():
            problems.append(f"{label}: not a regular file")
            continue
        found, typed = _file_problems(path, label)
        problems.extend(found)
        if typed is not None:
            items[path.name] = typed
    return items


def check_pal(pal_dir: Path) -> list[str]:
    """What is wrong with FCC's storage in pal_dir (empty: a complete, consistent store).

    Checks flashSim, that BACKUP and WORKING hold the same items, that every file is a
    version-1 ESFS file whose size fits its header and whose header names its file, and that
    the items a gateway needs are present. Problems name files and items, never contents.
    """
    if not pal_dir.is_dir():
        return [f"{pal_dir.name}: not a folder"]
    problems: list[str] = []
    flash = pal_dir / "flashSim"
    if not flash.is_file():
        problems.append("flashSim: missing")
    elif flash.stat().st_size == 0:
        problems.append("flashSim: empty")
    working = _folder(pal_dir, "WORKING", problems)
    backup = _folder(pal_dir, "BACKUP", problems)
    if (pal_dir / "WORKING").is_dir() and (pal_dir / "BACKUP").is_dir():
        for name in sorted(set(working) ^ set(backup)):
            where, missing = ("WORKING", "BACKUP") if name in working else ("BACKUP", "WORKING")
            problems.append(f"{where}/{name}: not in {missing}")
    for typed in REQUIRED:
        if working.get(file_name(typed)) != typed:
            problems.append(f"WORKING: {typed} ({file_name(typed)}) missing")
    return problems


def _sound(path: Path) -> bool:
    """A regular file that passes the checks of check_pal."""
    return path.is_file() and not path.is_symlink() and not _file_problems(path, "")[0]


def _replaceable(path: Path) -> bool:
    """Missing, or a regular file (never written through a link or over a folder)."""
    return not path.is_symlink() and (path.is_file() or not path.exists())


def _cut_short(copy: Path, twin: Path) -> bool:
    """`copy` holds the start of `twin` only: a write cut short (a crash leaves files empty
    or short, never changed)."""
    try:
        data, full = copy.read_bytes(), twin.read_bytes()
    except OSError:
        return False
    return len(data) < len(full) and full.startswith(data)


def copies_to_repair(pal_dir: Path) -> list[tuple[Path, Path]]:
    """(source, target) for each item whose copy in BACKUP or WORKING is missing, fails the
    checks or was cut short, while its twin passes them.

    FCC 4.10.0 writes a factory item to BACKUP, then copies it byte for byte to WORKING
    (esfs.c: esfs_close calls esfs_copy_file), and every item FCC stores is a factory item:
    the two copies hold the same bytes, so either can be made again from the other.
    """
    backup, working = pal_dir / "BACKUP", pal_dir / "WORKING"
    names: set[str] = set()
    for folder in (backup, working):
        if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
            return []  # a link or a file where FCC keeps a folder: not ours to write into
        if folder.is_dir():
            names.update(p.name for p in folder.iterdir())
    pairs = []
    for name in sorted(names):
        for source, target in ((backup / name, working / name), (working / name, backup / name)):
            if _sound(source) and _replaceable(target) and (
                    not _sound(target) or _cut_short(target, source)):
                pairs.append((source, target))
    return pairs


def check_parsec(mcc_config: Path) -> list[str]:
    """What is wrong with a Parsec store (its/ and pst/ under mcc_config; empty: none found)."""
    problems: list[str] = []
    for sub in ("its", "pst"):
        folder = mcc_config / sub
        if not folder.is_dir():
            problems.append(f"{sub}: missing")
            continue
        files = sorted(folder.iterdir())
        if not files:
            problems.append(f"{sub}: empty")
        for path in files:
            if not path.is_file() or path.is_symlink():
                problems.append(f"{sub}/{path.name}: not a regular file")
            elif path.stat().st_size == 0:
                problems.append(f"{sub}/{path.name}: empty")
    return problems
