"""Clearing the old identity and installing the new one as a swap.

Side effects: sets the previous identity aside (through the backup) and removes the profile's
extra files, renames credential directories under the root, fsyncs FCC's stored credentials,
writes identity.json (0600) atomically; sets the synchronous-update attributes on the folder
that holds FCC's storage and clears them from its folders; rewrites a copy of an item FCC
stored from its twin.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
from pathlib import Path

from pep_agent.errors import InstallError, PepError, ResumeError
from pep_agent.gateway import esfs
from pep_agent.gateway.backup import Backup
from pep_agent.gateway.discovery import discover_serial
from pep_agent.gateway.identity import read_installed
from pep_agent.settings.config import Settings
from pep_agent.settings.paths import Paths
from pep_agent.settings.profiles import Profile
from pep_agent.system.fsutil import (
    atomic_write,
    fsync_dir,
    install_error,
    make_dir,
    remove,
    rewrite,
    swap_in,
    sync_tree,
)
from pep_agent.system.syncflags import clear_synchronous, make_synchronous

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


def _holds_files(path: Path) -> bool:
    try:
        return path.is_dir() and any(path.iterdir())
    except OSError:
        return False


def drop_staged(paths: Paths, profile: Profile, *, store: bool) -> None:
    """Remove FCC's staging folder; with `store`, the Parsec store FCC wrote in mcc_config
    (whose previous content was moved aside)."""
    staging, (mcc, _) = staging_dir(paths, profile), targets(paths, profile)
    remove(staging)
    if store:
        remove(mcc)


def staged_pal(paths: Paths, profile: Profile) -> Path:
    return staging_dir(paths, profile) / "pal"


def credentials_ready(paths: Paths, profile: Profile, parsec: bool) -> bool:
    """FCC stored the credentials: in staging, or already swapped into place."""
    mcc, _ = targets(paths, profile)
    if parsec:
        return (mcc / "pst").exists()
    return _holds_files(staged_pal(paths, profile) / "WORKING") or _holds_files(mcc / "WORKING")


def own_identity(settings: Settings) -> tuple[str, str | None, bool] | None:
    """The identity installed for this gateway's own serial, with complete credentials: its
    serial, enrollment id and whether Parsec holds its keys; None otherwise."""
    parsec = uses_parsec(settings.paths, settings.parsec)
    mcc, identity_json = targets(settings.paths, settings.profile)
    doc = read_installed(identity_json)
    if doc is None or credential_problems(mcc, parsec):
        return None
    try:
        own, _ = discover_serial(settings)
    except PepError:
        return None  # the flow reports it at discover-serial
    return (own, doc.enrollment, parsec) if own == doc.serial else None


def credential_store(paths: Paths, profile: Profile, parsec: bool) -> Path:
    """Where FCC's credentials are now: mcc_config with Parsec or once installed, else staging."""
    mcc, _ = targets(paths, profile)
    pal = staged_pal(paths, profile)
    return pal if not parsec and pal.exists() else mcc


def credential_problems(store: Path, parsec: bool) -> list[str]:
    """What is wrong with FCC's stored credentials in `store` (see `credential_store`); empty:
    every file present, non-empty and complete as far as FCC's format tells. Names files,
    never contents."""
    return esfs.check_parsec(store) if parsec else esfs.check_pal(store)


def storage_parent(paths: Paths, profile: Profile) -> Path:
    """The folder FCC's storage is created in: it holds mcc_config (where FCC writes with
    Parsec) and FCC's staging folder (its working directory without)."""
    mcc, _ = targets(paths, profile)
    return mcc.parent


def protect_storage(paths: Paths, profile: Profile) -> None:
    """Before FCC starts: the synchronous-update attributes (directory-sync and sync) on the
    folder FCC's storage is created in; its new subfolders inherit both, its new files the
    sync one. FCC syncs no directory: without them, a file system that does not order
    metadata can lose FCC's new names in a power cut before the agent's fsyncs, while the
    server already holds the record; and an FCC that does not open its files O_SYNC can lose
    their data there. Unsupported: FCC runs all the same, the agent's fsyncs follow."""
    parent = storage_parent(paths, profile)
    make_dir(parent)
    make_synchronous(parent)


def make_staged_durable(store: Path) -> None:
    """fsync everything FCC stored in `store` (see `credential_store`): it opens files O_SYNC
    but never syncs a directory, so a new name (pal itself, WORKING, each item) is not durable
    until this has run. Raises OSError."""
    if store.exists():
        sync_tree(store)


def repair_copies(store: Path) -> None:
    """FCC writes each item to BACKUP, then copies the same bytes to WORKING (ESFS's
    esfs_close and esfs_copy_file): a copy a power cut lost or cut short is written again from
    its twin, durably. A cut during that rewrite leaves an empty or short copy, repaired the
    same way by the next run. Raises OSError."""
    for source, target in esfs.copies_to_repair(store):
        rewrite(target, source.read_bytes(), mode=stat.S_IMODE(source.stat().st_mode))
        log.info("FCC's %s/%s was missing or incomplete: written again from its copy in %s",
                 target.parent.name, target.name, source.parent.name)


def secure_credentials(paths: Paths, profile: Profile, parsec: bool, serial: str,
                       enrollment: str) -> None:
    """Durable before trusted: fsync all FCC stored (an error is an install failure), repair
    a lost copy of an item from its twin, then check it. Incomplete credentials while the
    server holds the record: ResumeError."""
    # FCC has stopped: where its credentials are does not change between the sync, the
    # repair and the check.
    store = credential_store(paths, profile, parsec)
    try:
        make_staged_durable(store)
        if not parsec:
            repair_copies(store)
    except OSError as e:
        raise install_error("making FCC's stored credentials durable", e) from None
    problems = credential_problems(store, parsec)
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
            if not _holds_files(pal / "WORKING"):
                raise InstallError("FCC's pal/WORKING folder is empty: nothing to install")
            swap_in(pal, mcc)
        elif not _holds_files(mcc / "WORKING"):
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
    # Installed: what is created there later (by edge-core) need not be synchronous. Every
    # folder FCC made has its own copy of the attributes.
    clear_synchronous(storage_parent(paths, profile))


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
