"""Durable before trusted: every directory the agent creates on
the way to the marker has its entry fsync'd, an error while syncing the identity is an install
failure, and a request that never left is told apart from one that may have been answered."""

from __future__ import annotations

import contextlib
import errno
import os
import socketserver
from collections.abc import Callable
from pathlib import Path

import pytest

from pep_agent.errors import InstallError, PepError
from pep_agent.exit_codes import Exit
from pep_agent.gateway import install
from pep_agent.journal import Journal
from pep_agent.settings.paths import Paths
from pep_agent.settings.profiles import get_profile
from pep_agent.system import fsutil
from pep_agent.system.http import PepClient
from tests.agentprocs import free_port
from tests.fakes import write_pal
from tests.loopback import LoopbackServer

LMP = get_profile("lmp")


@pytest.fixture
def synced(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """The directories fsync'd, in order."""
    seen: list[Path] = []
    real = fsutil.fsync_dir

    def record(path: Path) -> None:
        seen.append(Path(path))
        real(path)

    monkeypatch.setattr(fsutil, "fsync_dir", record)
    return seen


def test_the_state_directory_entry_is_made_durable(tmp_path: Path, synced: list[Path]) -> None:
    """An unsynced state directory entry can vanish in a power cut, and the journal of an
    injection with it."""
    paths = Paths(tmp_path)
    Journal(paths.journal).update(injection={"serialNumber": "SN-1"})
    assert paths.state_dir.is_dir()
    # Each new directory's parent, from the top down, then the journal's own rename.
    for new in (tmp_path / "userdata", paths.state_dir):
        assert new.parent in synced, f"the entry of {new} was never synced"
    assert synced.index(paths.state_dir.parent) < synced.index(paths.state_dir)


def test_staging_and_edge_gw_config_entries_are_made_durable(tmp_path: Path,
                                                              synced: list[Path]) -> None:
    paths = Paths(tmp_path)
    staging = install.staging_dir(paths, LMP)
    fsutil.make_dir(staging, mode=0o700)
    assert staging.parent in synced and (staging.stat().st_mode & 0o777) == 0o700
    write_pal(install.staged_pal(paths, LMP), {"CfgParam_mbed.EndpointName": b"SN-1"})
    install.install(paths, LMP, False, b"{}\n")
    _, identity = install.targets(paths, LMP)
    assert identity.parent.parent in synced, "edge_gw_config's entry was never synced"


@pytest.mark.parametrize("unopenable", ["mbed/mcc_config", "mbed/mcc_config/WORKING",
                                        "edge_gw_config"])
def test_an_unreadable_folder_is_an_install_failure(tmp_path: Path, unopenable: str,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """os.walk skips what it cannot open unless told otherwise: the marker must not follow."""
    paths = Paths(tmp_path)
    write_pal(install.staged_pal(paths, LMP), {"CfgParam_mbed.EndpointName": b"SN-1"})
    install.install(paths, LMP, False, b"{}\n")
    broken = tmp_path / "userdata" / unopenable
    real = os.scandir

    def scandir(path: object = ".") -> object:
        if Path(str(path)) == broken:
            raise OSError(errno.EIO, os.strerror(errno.EIO), str(path))
        return real(path)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "scandir", scandir)
    with pytest.raises(InstallError) as raised:
        install.make_durable(paths, LMP)
    assert raised.value.code == Exit.INSTALL
    assert "making the new identity durable" in raised.value.message


def test_sync_tree_raises_for_a_missing_store(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        fsutil.sync_tree(tmp_path / "absent")


class Unanswered(socketserver.BaseRequestHandler):
    """Reads the request, then closes without answering."""

    def handle(self) -> None:
        self.request.settimeout(2)
        with contextlib.suppress(OSError):
            self.request.recv(65536)


@pytest.fixture
def closing_server(loopback: Callable[..., LoopbackServer]) -> int:
    """The port of a TCP server that reads the request, then closes without answering."""
    return int(loopback(Unanswered).port)


def _error(url: str) -> PepError:
    client = PepClient(url, timeout=5)
    with pytest.raises(PepError) as raised:
        client.identity({"serialNumber": "SN-1"})
    return raised.value


def test_a_refused_connection_never_sent_the_request() -> None:
    """Nothing left the gateway, so nothing can have been injected."""
    err = _error(f"http://127.0.0.1:{free_port()}")
    assert err.code == Exit.SERVER_UNREACHABLE and err.transient
    assert not err.sent


def test_a_failed_tls_handshake_never_sent_the_request(closing_server: int) -> None:
    err = _error(f"https://127.0.0.1:{closing_server}")
    assert err.code == Exit.SERVER_UNREACHABLE
    assert not err.sent


def test_a_request_the_server_read_counts_as_sent(closing_server: int) -> None:
    err = _error(f"http://127.0.0.1:{closing_server}")
    assert err.code == Exit.SERVER_UNREACHABLE
    assert err.sent
