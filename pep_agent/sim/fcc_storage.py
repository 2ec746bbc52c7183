"""Where the FCC stand-in keeps injected items, laid out as the real FCC's storage.

Side effects: creates, erases and writes files under ./pal (relative to the working directory)
or, in Parsec mode, under the mcc_config directory (its/ for keys, pst/ for everything else).

Without Parsec the layout is the real one (pep_agent.gateway.esfs): `pal/flashSim`, and each item
as an ESFS file under its hashed name, written to `pal/BACKUP` and then copied to `pal/WORKING`.
Like the real FCC, files are opened O_SYNC and overwritten in place (O_TRUNC): no temporary
file, no fsync, no directory sync, so a crash mid-write leaves empty or short files. With
`sync=False` (an FCC build without O_SYNC) data reaches the disk only when the kernel flushes.
Modes are the real FCC's (under the caller's umask): files 0644, `pal` 0744, its folders 0755.
Certificates and public keys are stored unencrypted (mode 0x0200, no nonce), everything else
encrypted (0x0300, an 8-byte nonce). `flashSim` holds random bytes where the real FCC keeps its
root of trust.

With Parsec the items are plain files named after the item: the real PSA storage format is
Parsec's and its keys never leave it, so only the folders and the erase are imitated.
"""

from __future__ import annotations

import os
import secrets
import shutil
from pathlib import Path

from pep_agent.gateway import esfs
from pep_agent.sim import esfs_codec
from pep_agent.sim.bundle import Item

DEFAULT_MCC_CONFIG = Path("/userdata/mbed/mcc_config")
# The metadata type KCM gives the chain length of a chain's first certificate.
CHAIN_LENGTH = 0
FILE_MODE = 0o644
PAL_MODE = 0o744
# Items KCM stores in the clear: certificates and public keys (no secret in them).
_PLAIN_PREFIXES = (esfs.CERT_PREFIX, esfs.PUBLIC_KEY_PREFIX, "Crt")


class Storage:
    """The FCC's credential storage: pal/{flashSim,BACKUP,WORKING}, or its/ + pst/ with Parsec."""

    def __init__(self, *, parsec: bool, mcc_config: Path | None, cwd: Path,
                 sync: bool = True) -> None:
        self.parsec = parsec
        self.sync = sync
        self.erased = False
        self.root = (mcc_config or DEFAULT_MCC_CONFIG) if parsec else cwd / "pal"

    @property
    def folders(self) -> tuple[Path, ...]:
        if self.parsec:
            return self.root / "its", self.root / "pst"
        return self.root / "BACKUP", self.root / "WORKING"

    def prepare(self) -> Path:
        """Create the storage (what FCC does at start); returns the root."""
        if self.parsec:
            for folder in self.folders:
                folder.mkdir(parents=True, exist_ok=True)
        else:
            # BACKUP and WORKING appear with the first message's erase, as with the real FCC.
            self.root.mkdir(mode=PAL_MODE, parents=True, exist_ok=True)
        flash = self.root / "flashSim"
        if not self.parsec and not flash.is_file():
            self._write_file(flash, secrets.token_bytes(esfs.FLASHSIM_SIZE))
        return self.root

    def erase(self) -> None:
        """Empty the storage, as FCC does when the first message of a session arrives."""
        for folder in self.folders:
            if folder.is_dir() and not folder.is_symlink():
                shutil.rmtree(folder)
            elif folder.exists() or folder.is_symlink():
                folder.unlink()
            folder.mkdir(parents=True)
        self.erased = True

    def _write_file(self, path: Path, content: bytes) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | (os.O_SYNC if self.sync else 0)
        fd = os.open(path, flags, FILE_MODE)
        with os.fdopen(fd, "wb") as f:
            f.write(content)

    def _write_parsec(self, item: Item) -> None:
        # PSA internal trusted storage holds keys; the KV store holds certificates and config.
        folder = self.root / ("its" if item.group == "Keys" else "pst")
        self._write_file(folder / (item.name if item.prefix is None else item.typed),
                         item.content())

    def write(self, items: list[Item], working: bool = True) -> None:
        """Store every item: in BACKUP, then the same bytes in WORKING (Parsec: one file);
        working=False writes BACKUP only (Parsec: nothing)."""
        for item in items:
            if self.parsec:
                if working:
                    self._write_parsec(item)
                continue
            typed = item.typed
            mode = esfs.MODE_FACTORY if typed.startswith(_PLAIN_PREFIXES) else esfs.FACTORY_MODE
            metadata = ((CHAIN_LENGTH, item.chain.to_bytes(2, "little")),) if item.chain else ()
            blob = esfs_codec.encode(typed, item.content(),
                                     secrets.token_bytes(esfs.NONCE_SIZE), mode, metadata)
            name = esfs.file_name(typed)
            self._write_file(self.root / "BACKUP" / name, blob)
            if working:
                self._write_file(self.root / "WORKING" / name, blob)
