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

Files the real FCC wrote cannot be decoded here (the key stays in the device), only checked by
their headers; the simulator's stand-in for the format is sim/esfs_codec.py.
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

FIXED = struct.Struct("<HHH")
COUNT = struct.Struct("<H")
META = struct.Struct("<HHH")
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
    if len(blob) < FIXED.size:
        raise EsfsError(f"{len(blob)} bytes: shorter than the ESFS header")
    version, mode, name_length = FIXED.unpack_from(blob)
    if version != VERSION:
        raise EsfsError(f"ESFS version {version}, expected {VERSION}")
    offset = FIXED.size
    name_bytes = blob[offset:offset + name_length]
    offset += name_length
    nonce_size = NONCE_SIZE if mode & MODE_ENCRYPTED else 0
    nonce = blob[offset:offset + nonce_size]
    offset += nonce_size
    if len(blob) < offset + COUNT.size:
        raise EsfsError(f"name length {name_length} does not fit a {len(blob)}-byte file")
    (count,) = COUNT.unpack_from(blob, offset)
    offset += COUNT.size
    if len(blob) < offset + count * META.size:
        raise EsfsError(f"{count} metadata entries do not fit a {len(blob)}-byte file")
    metadata_size = sum(META.unpack_from(blob, offset + i * META.size)[1] for i in range(count))
    offset += count * META.size
    try:
        name = name_bytes.decode()
    except UnicodeDecodeError:
        raise EsfsError("the item name is not UTF-8") from None
    header = Header(version, mode, name, nonce, offset, metadata_size)
    if header.data_size(len(blob)) < 0:
        raise EsfsError(f"header and trailer do not fit a {len(blob)}-byte file")
    return header


def _file_problems(path: Path, label: str) -> tuple[list[str], Header | None]:
    """Problems of one ESFS file, and its header (None if unreadable)."""
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
    return [], header


def _folder(pal: Path, sub: str, problems: list[str]) -> dict[str, Header]:
    """{file name: header} of the readable files in pal/sub; problems appended."""
    folder = pal / sub
    if not folder.is_dir():
        problems.append(f"{sub}: missing")
        return {}
    items: dict[str, Header] = {}
    for path in sorted(folder.iterdir()):
        label = f"{sub}/{path.name}"
        if not path.is_file() or path.is_symlink():
            problems.append(f"{label}: not a regular file")
            continue
        found, header = _file_problems(path, label)
        problems.extend(found)
        if header is not None:
            items[path.name] = header
    return items


def check_pal(pal_dir: Path) -> list[str]:
    """What is wrong with FCC's storage in pal_dir (empty: a complete, consistent store).

    Checks flashSim, that BACKUP and WORKING hold the same factory items (the running client
    keeps its own items in WORKING alone: ESFS copies only factory items), that every file is a
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
            if name in working and not working[name].mode & MODE_FACTORY:
                continue
            where, missing = ("WORKING", "BACKUP") if name in working else ("BACKUP", "WORKING")
            problems.append(f"{where}/{name}: not in {missing}")
    for typed in REQUIRED:
        found = working.get(file_name(typed))
        if found is None or found.name != typed:
            problems.append(f"WORKING: {typed} ({file_name(typed)}) missing")
    return problems


def _sound(path: Path, factory: bool = False) -> bool:
    """A regular file that passes the checks of check_pal (with `factory`, a factory item's)."""
    if not path.is_file() or path.is_symlink():
        return False
    problems, header = _file_problems(path, "")
    return not problems and (not factory or bool(header and header.mode & MODE_FACTORY))


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
    the two copies hold the same bytes, so either can be made again from the other. An item
    the running client wrote (not a factory item) lives in WORKING alone and stays there.
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
        for source, target, factory in ((backup / name, working / name, False),
                                        (working / name, backup / name, True)):
            if _sound(source, factory) and _replaceable(target) and (
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
