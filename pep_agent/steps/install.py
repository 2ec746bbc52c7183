"""Clearing the old identity and installing the new one as a swap.

Side effects: renames credential and identity directories under the root, writes identity.json
(0600) atomically, removes the previous identity only once the new one is complete.
"""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path

from pep_agent.errors import InstallError
from pep_agent.paths import Paths
from pep_agent.profiles import Profile
from pep_agent.system.fsutil import (
    atomic_write,
    install_error,
    move_aside,
    non_empty_dir,
    remove,
    swap_in,
)

PREVIOUS = ".pep-previous"


def targets(paths: Paths, profile: Profile) -> tuple[Path, Path]:
    """(mcc_config directory, identity.json file) under the root."""
    return paths.under(profile.mcc_config), paths.under(profile.identity_json)


def backups(paths: Paths, profile: Profile) -> list[Path]:
    mcc, identity = targets(paths, profile)
    return [mcc.with_name(mcc.name + PREVIOUS), identity.parent.with_name(
        identity.parent.name + PREVIOUS)]


def clear_identity(paths: Paths, profile: Profile) -> list[str]:
    """Move the old credentials and identity aside (kept until the new ones are installed)."""
    mcc, identity = targets(paths, profile)
    moved = []
    try:
        for src, backup in zip((mcc, identity.parent), backups(paths, profile)):
            if backup.exists():
                # A failed run already put the real previous identity aside; what is in
                # place now is that run's leftover (e.g. a partial Parsec store).
                remove(src)
            elif move_aside(src, backup):
                moved.append(str(src))
        for extra in profile.extra_clear:
            remove(paths.under(extra))
    except OSError as e:
        raise install_error("clearing the old identity", e) from None
    return moved


def staging_dir(paths: Paths, profile: Profile) -> Path:
    """FCC's working directory, beside mcc_config.

    Beside it so that the switch is a rename within one file system: /userdata may be its own
    partition, and under systemd StateDirectory= and ReadWritePaths= are separate bind mounts,
    across which rename() fails with EXDEV.
    """
    mcc, _ = targets(paths, profile)
    return mcc.parent / ".pep-agent-staging"


def staged_pal(paths: Paths, profile: Profile) -> Path:
    return staging_dir(paths, profile) / "pal"


def credentials_ready(paths: Paths, profile: Profile, parsec: bool) -> bool:
    """FCC stored the credentials: in staging, or already swapped into place."""
    mcc, _ = targets(paths, profile)
    if parsec:
        return (mcc / "pst").exists()
    return non_empty_dir(staged_pal(paths, profile) / "WORKING") or non_empty_dir(mcc / "WORKING")


def install(paths: Paths, profile: Profile, parsec: bool, identity: bytes) -> None:
    """Switch the staged credentials into place, then write identity.json. Idempotent."""
    mcc, identity_path = targets(paths, profile)
    if parsec:
        if not (mcc / "pst").exists():
            raise InstallError(f"{mcc / 'pst'} is missing: FCC did not store the credentials "
                               "in Parsec", hint="check parsec.service and FCC's output")
    else:
        pal = staged_pal(paths, profile)
        if pal.exists():
            if not non_empty_dir(pal / "WORKING"):
                raise InstallError("FCC's pal/WORKING folder is empty: nothing to install")
            swap_in(pal, mcc)
        elif not non_empty_dir(mcc / "WORKING"):
            raise InstallError(f"no staged credentials and no {mcc}/WORKING")
    try:
        identity_path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        atomic_write(identity_path, identity, mode=0o600)
    except OSError as e:
        if not parsec:
            # All or nothing: the credentials go back to staging (a rename needs no free
            # space), where a rerun finds them.
            with contextlib.suppress(OSError):
                os.rename(mcc, staged_pal(paths, profile))
        raise install_error(f"writing {identity_path}", e) from None


def make_durable(paths: Paths, profile: Profile) -> None:
    """Everything the `provisioned` marker vouches for reaches the disk before it is written.

    FCC does not fsync its files, and mkdir and rename are metadata that a file system need not
    order: fsync every file and directory of the new identity and their parents, then sync the
    rest (the state directory and the marker may live on another file system).
    """
    try:
        for top in targets(paths, profile):
            for dirpath, _dirs, files in os.walk(top if top.is_dir() else top.parent):
                for name in files:
                    _fsync(Path(dirpath, name), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
                _fsync(Path(dirpath), os.O_RDONLY | os.O_DIRECTORY)
            _fsync(top.parent.parent, os.O_RDONLY | os.O_DIRECTORY)
            _fsync(top.parent, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as e:
        raise install_error("making the new identity durable", e) from None
    os.sync()


def _fsync(path: Path, flags: int) -> None:
    try:
        fd = os.open(path, flags)
    except OSError as e:
        if e.errno == errno.ELOOP:
            return  # a symlink FCC left: its target is not ours to sync
        raise
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def restore_previous(paths: Paths, profile: Profile) -> None:
    """Undo clear_identity: what a failed run left in place goes, the previous identity returns."""
    mcc, identity = targets(paths, profile)
    for src, backup in zip((mcc, identity.parent), backups(paths, profile)):
        if backup.exists():
            remove(src)
            os.rename(backup, src)


def drop_previous(paths: Paths, profile: Profile) -> None:
    """The new identity is complete: the previous one can go."""
    for backup in backups(paths, profile):
        remove(backup)
