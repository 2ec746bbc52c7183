"""Room for a provision where FCC stores: checked before anything changes, and named when FCC
could not store.

Side effects: reads the free space (blocks and inodes) of the file system FCC stores on.
"""

from __future__ import annotations

import logging

from pep_agent.errors import InstallError, NoSpaceError, PepError
from pep_agent.gateway import esfs
from pep_agent.gateway.install import storage_parent
from pep_agent.settings.paths import Paths
from pep_agent.settings.profiles import Profile
from pep_agent.system import diskspace

log = logging.getLogger("pep_agent")


# Free blocks a provision needs where FCC stores: FCC writes each of its ~17 items twice
# (BACKUP and WORKING, a block each), three folders and flashSim (FLASHSIM_SIZE); the agent
# adds identity.json, the saved answer and its journal. A real provision took 49 blocks of
# 4 kB on ext4 (45 kB on 1 kB blocks); 64 leave room for a larger bundle. As many inodes.
SPACE_BLOCKS = 64


def space_needed(block_size: int) -> int:
    return SPACE_BLOCKS * block_size + esfs.FLASHSIM_SIZE


def _kb(size: int) -> str:
    return f"{size // 1024} kB"


def _short_of_space(space: diskspace.Space) -> tuple[str, str] | None:
    """(what is missing for a provision, the hint), or None when there is room."""
    need = space_needed(space.block_size)
    where = f"on the file system of {space.folder}"
    if space.free_bytes < need:
        return (f"{space.folder} has {_kb(space.free_bytes)} free, FCC and the identity need "
                f"about {_kb(need)}",
                f"free at least {_kb(need - space.free_bytes)} {where} (`df -k "
                f"{space.folder}`), then run again")
    if space.free_inodes is not None and space.free_inodes < SPACE_BLOCKS:
        return (f"{space.folder} has {space.free_inodes} free inodes, FCC and the identity "
                f"need about {SPACE_BLOCKS}",
                f"remove files {where} (`df -i {space.folder}`), then run again")
    return None


def check_space(paths: Paths, profile: Profile) -> None:
    """Before FCC starts (and before anything is changed): NoSpaceError when the file system
    FCC stores on is too full for a provision. On a full disk the real FCC stores part of the
    items, crashes, and the server deletes its record: nothing is gained by starting it."""
    try:
        space = diskspace.free_space(storage_parent(paths, profile))
    except OSError as e:
        log.debug("cannot measure the free space for FCC: %s", e.strerror or e)
        return
    short = _short_of_space(space)
    if short:
        raise NoSpaceError(f"not enough free space for FCC's credentials: {short[0]}; nothing "
                           "was changed", hint=short[1])


def fcc_storage_error(paths: Paths, profile: Profile, fcc_line: str) -> PepError:
    """FCC printed a storage error (`fcc_line`) and the server holds no record: the error that
    says so, a NoSpaceError when the file system is (still) short of space. A restarted FCC
    would fail the same way."""
    folder = storage_parent(paths, profile)
    try:
        space = diskspace.free_space(folder)
    except OSError:
        space = None
    short = _short_of_space(space) if space else None
    said = f"FCC could not store the credentials (its error: {fcc_line[:160]!r})"
    if space is None:
        return InstallError(f"{said}; the free space of {folder} cannot be read",
                            hint=f"check the file system of {folder}: full, read-only or "
                                 "failing")
    if short:
        return NoSpaceError(f"{said}: {short[0]}", hint=short[1])
    return InstallError(f"{said}, although {space.folder} has {_kb(space.free_bytes)} free now",
                        hint=f"check the file system of {space.folder}: it may have been full "
                             "meanwhile, read-only, or failing (see the kernel log)")
