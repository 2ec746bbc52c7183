"""Where the FCC stand-in keeps injected items, laid out like the real FCC's storage.

Side effects: creates, erases and writes files under ./pal (relative to the working directory)
or, in Parsec mode, under the mcc_config directory (its/ for keys, pst/ for everything else).
Item files are mode 0600 and fsynced: they hold private keys.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from pep_agent.sim.bundle import Item

DEFAULT_MCC_CONFIG = Path("/userdata/mbed/mcc_config")


class Storage:
    """The FCC's credential storage: pal/WORKING, or its/ + pst/ with Parsec."""

    def __init__(self, *, parsec: bool, mcc_config: Path | None, cwd: Path) -> None:
        self.parsec = parsec
        self.erased = False
        self.root = (mcc_config or DEFAULT_MCC_CONFIG) if parsec else cwd / "pal"

    @property
    def folders(self) -> tuple[Path, ...]:
        if self.parsec:
            return self.root / "its", self.root / "pst"
        return (self.root / "WORKING",)

    def prepare(self) -> Path:
        """Create the storage folders if needed (what FCC does at start); returns the root."""
        for folder in self.folders:
            folder.mkdir(parents=True, exist_ok=True)
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

    def path_of(self, item: Item) -> Path:
        if not self.parsec:
            return self.root / "WORKING" / item.name
        # PSA internal trusted storage holds keys; the KV store holds certificates and config.
        return self.root / ("its" if item.group == "Keys" else "pst") / item.name

    def write(self, items: list[Item]) -> None:
        """Store every item as one file whose content is the item's data."""
        for item in items:
            path = self.path_of(item)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(item.content())
                f.flush()
                os.fsync(f.fileno())
