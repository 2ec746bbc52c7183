"""Clearing the old identity and installing the new one as a swap.

Side effects: sets the previous identity aside (through the backup) and removes the profile's
extra files, renames credential directories under the root, fsyncs FCC's stored credentials,
writes identity.json (0600) atomically.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

from pep_agent import esfs
from pep_agent.errors import InstallError, ResumeError
from pep_agent.gateway.backup import Backup
from pep_agent.paths import Paths
from pep_agent.profiles import Profile
from pep_agent.system.fsutil import (
    atomic_write,
    fsync_dir,
    install_error,
    make_dir,
    non_empty_dir,
    remove,
    swap_in,
    sync_tree,
)

log = logging.getLogger("pep_agent")


def uses_parsec(paths: Paths, setting: str) -> bool:
    """Whether Parsec holds the keys: PEP_PARSEC true, or auto with its socket present."""
    return setting == "true" or (setting == "auto" and paths.parsec_socket.exists())


def targets(paths: Paths, profile: Profile) -> tuple[Path, Path]:
    """(mcc_config directory, identity.json file) under the root."""
    return paths.under(profile.mcc_config), paths.under(profile.identity_json)


def clear_identity(paths: Paths, profile: Profile) -> list[str]:
    """Set the old credentials and identity aside (kept until the new ones are installed)."""
    backup = Backup(paths, profile)
    try:
        moved = backup.set_aside(backup.identity)
        for extra in profile.extra_clear:
            remove(paths.under(extra))
    except OSError as e:
        raise install_error("clearing the old identity", e) from None
    return [str(p) for p in moved]


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


def credential_store(paths: Paths, profile: Profile, parsec: bool) -> Path:
    """Where FCC's credentials are now: mcc_config with Parsec or once installed, else staging."""
    mcc, _ = targets(paths, profile)
    pal = staged_pal(paths, profile)
    return pal if not parsec and pal.exists() else mcc


def credential_problems(paths: Paths, profile: Profile, parsec: bool) -> list[str]:
    """What is wrong with FCC's stored credentials (empty: every file present, non-empty and
    complete as far as FCC's format tells). Names files, never contents."""
    store = credential_store(paths, profile, parsec)
    return esfs.check_parsec(store) if parsec else esfs.check_pal(store)


def make_staged_durable(paths: Paths, profile: Profile, parsec: bool) -> None:
    """fsync everything FCC stored: it opens files O_SYNC but never syncs a directory, so a new
    name (pal itself, WORKING, each item) is not durable until this has run. Raises OSError."""
    store = credential_store(paths, profile, parsec)
    if store.exists():
        sync_tree(store)


def secure_credentials(paths: Paths, profile: Profile, parsec: bool, serial: str,
                       enrollment: str) -> None:
    """Durable before trusted: fsync all FCC stored (an error is an install failure), then
    check it. Incomplete credentials while the server holds the record: ResumeError."""
    try:
        make_staged_durable(paths, profile, parsec)
    except OSError as e:
        raise install_error("making FCC's stored credentials durable", e) from None
    problems = credential_problems(paths, profile, parsec)
    if not problems:
        # Checked three times in a run (after FCC, before the install, before the marker): the
        # flow says it once.
        log.debug("FCC's stored credentials are complete and on disk")
        return
    shown = "; ".join(problems[:5]) + ("; ..." if len(problems) > 5 else "")
    raise ResumeError(
        f"the server holds the record of serial {serial} (enrollment id {enrollment}) but "
        f"FCC's stored credentials are incomplete ({shown}): this identity cannot be installed",
        hint=f"no gateway holds this identity: remove the record of serial {serial} on the "
             "pep server, then run `pep-agent reprovision`")


def install(paths: Paths, profile: Profile, parsec: bool, identity: bytes) -> None:
    """Switch the staged credentials into place, then write identity.json. Idempotent.

    The caller has checked the credentials (credential_problems) and made them durable.
    """
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
        make_dir(identity_path.parent)
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

    fsync every file and directory of the new identity and their parents (any error is an
    install failure: nothing is skipped), then sync the rest (the state directory and the
    marker may live on another file system).
    """
    try:
        for top in targets(paths, profile):
            sync_tree(top if top.is_dir() else top.parent)
            fsync_dir(top.parent.parent)
    except OSError as e:
        raise install_error("making the new identity durable", e) from None
    os.sync()
