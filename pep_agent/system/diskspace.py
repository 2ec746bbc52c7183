"""Free space of a file system, as this process can use it. No side effects (statvfs, and a
read of the process's own capabilities in /proc).

ext4 keeps a share of its blocks (5 % by default) for processes with CAP_SYS_RESOURCE: the
provisioning unit runs as root without that capability (its CapabilityBoundingSet), so it and
FCC see only the blocks left to everyone (f_bavail); a root shell with full capabilities can
use the reserve as well (f_bfree).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from pep_agent.settings.paths import HOST_PROC

CAP_SYS_RESOURCE = 24  # include/uapi/linux/capability.h


@dataclass(frozen=True)
class Space:
    folder: Path  # the existing folder that was measured
    free_bytes: int
    free_inodes: int | None  # None: the file system does not count inodes (vfat, btrfs)
    block_size: int


def nearest_existing(path: Path) -> Path:
    """`path`, or its closest ancestor that exists."""
    while not path.exists() and path.parent != path:
        path = path.parent
    return path


def _may_use_reserve() -> bool:
    try:
        for line in (HOST_PROC / "self" / "status").read_text().splitlines():
            if line.startswith("CapEff:"):
                return bool(int(line.split()[1], 16) >> CAP_SYS_RESOURCE & 1)
    except (OSError, ValueError, IndexError):
        pass
    return False


def free_space(path: Path) -> Space:
    """The space and inodes this process may still use where `path` is (or would be).
    Raises OSError when even the closest existing ancestor cannot be measured."""
    folder = nearest_existing(path)
    st = os.statvfs(folder)
    reserve = _may_use_reserve()
    blocks = st.f_bfree if reserve else st.f_bavail
    inodes = (st.f_ffree if reserve else st.f_favail) if st.f_files else None
    block = st.f_frsize or st.f_bsize
    return Space(folder, blocks * block, inodes, block)
