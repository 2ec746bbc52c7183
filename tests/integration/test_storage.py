"""The storage cases on real processes (agent, pep server and FCC simulators on loopback): the
stored credentials are checked before they are trusted, a lost state directory does not strand
a working gateway, and a refused reprovision leaves journald's sealing key alone."""

from __future__ import annotations

import json
import shlex
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pep_agent.gateway import esfs
from pep_agent.system.syncflags import FS_SYNC_FL, SYNCHRONOUS, synchronous_flags
from tests.agentprocs import agent_env, free_port, provision, run_agent, service_log, status
from tests.crash.explore import sync_attributes_supported
from tests.endstate import (
    IDENTITY,
    MCC,
    STATE_DIR,
    assert_no_wasted_identity,
    edge_core_ops,
    end_state,
    identity_requests,
)
from tests.simprocs import SimServer, fcc_argv, fcc_command, start_server


@pytest.fixture
def server(tmp_path: Path) -> Iterator[SimServer]:
    srv = start_server(tmp_path / "server")
    yield srv
    srv.stop()


def _fcc_then_truncate(item: str) -> str:
    """FCC, then both copies of one item (BACKUP and WORKING) cut to nothing: what a power cut
    between FCC's writes and the write-back leaves on a file system with delayed allocation
    (one copy alone would be repaired from the other)."""
    name = esfs.file_name(item)
    script = (f'{shlex.join(fcc_argv())}; rc=$?; : > pal/WORKING/{name}; : > pal/BACKUP/{name}; '
              'exit "$rc"')
    return shlex.join(["sh", "-c", script])


def test_empty_credentials_are_never_marked_provisioned(tmp_path: Path,
                                                        server: SimServer) -> None:
    """Case 1: a marker over an empty credential file used to end in exit 0."""
    root, serial = tmp_path / "gw", "GW-EMPTY"
    out = provision(root, server.url, serial,
                    _fcc_then_truncate("PrvKey_mbed.BootstrapDevicePrivateKey"))
    assert out.returncode == 22, out.stderr
    assert "credentials are incomplete" in out.stderr
    assert f"WORKING/{esfs.file_name('PrvKey_mbed.BootstrapDevicePrivateKey')}: empty" \
        in out.stderr
    assert "no gateway holds this identity" in out.stderr
    assert not (root / STATE_DIR / "provisioned").exists()
    assert not (root / IDENTITY).exists()
    assert status(root)["error"]["code"] == 22
    # The server does hold the record: a rerun says the same, it never reports success.
    assert server.get("/v3/enrollment-id", serialNumber=serial).status_code == 200
    again = provision(root, server.url, serial, fcc_command())
    assert again.returncode == 22, again.stderr
    assert not (root / STATE_DIR / "provisioned").exists()
    assert len(identity_requests(server, serial)) == 1
    # Nothing was deleted: what FCC stored stays, with the journal still expecting it.
    assert assert_no_wasted_identity(server, {serial: root}) == {serial: "recovery-pending"}


def test_an_empty_parsec_store_is_never_marked_provisioned(tmp_path: Path,
                                                           server: SimServer) -> None:
    """Case 1 with Parsec: the check is that its/ and pst/ hold non-empty files."""
    root, serial = tmp_path / "gw", "GW-PARSEC-EMPTY"
    pst = root / MCC / "pst"
    script = (f'{shlex.join(fcc_argv(parsec=True, mcc_config=root / MCC))}; rc=$?; '
              f'for f in {shlex.quote(str(pst))}/*; do : > "$f"; done; exit "$rc"')
    out = provision(root, server.url, serial, shlex.join(["sh", "-c", script]), "--parsec")
    assert out.returncode == 22, out.stderr
    assert "credentials are incomplete (pst/" in out.stderr and ": empty" in out.stderr
    assert not (root / STATE_DIR / "provisioned").exists()
    assert not (root / IDENTITY).exists()


def test_a_lost_state_directory_keeps_the_working_identity(tmp_path: Path,
                                                           server: SimServer) -> None:
    """Case 4: /var/lib in RAM: the next boot finds no marker beside a working identity."""
    root, serial = tmp_path / "gw", "GW-VOLATILE"
    assert provision(root, server.url, serial, fcc_command()).returncode == 0
    installed = (root / IDENTITY).read_bytes()
    store = {p: p.read_bytes() for p in sorted((root / MCC).rglob("*")) if p.is_file()}
    (root / STATE_DIR / "provisioned").unlink()
    (root / STATE_DIR / "state.json").unlink()
    (root / STATE_DIR / "sandbox-services.log").unlink()

    # Far from the server: nothing changes, edge-core is not held, and the agent says why.
    out = provision(root, f"http://127.0.0.1:{free_port()}", serial, fcc_command())
    assert out.returncode == 27, out.stderr
    assert "nothing was changed; edge-core keeps running on the installed identity" in out.stderr
    assert (root / IDENTITY).read_bytes() == installed
    assert {p: p.read_bytes() for p in sorted((root / MCC).rglob("*")) if p.is_file()} == store
    assert "hold" not in edge_core_ops(root)

    # The server holds this very identity: the gateway is provisioned, nothing is requested.
    out = provision(root, server.url, serial, fcc_command())
    assert out.returncode == 0, out.stderr
    assert (root / IDENTITY).read_bytes() == installed
    assert {p: p.read_bytes() for p in sorted((root / MCC).rglob("*")) if p.is_file()} == store
    assert len(identity_requests(server, serial)) == 1
    assert (root / STATE_DIR / "provisioned").read_text() == f"{serial}\n"
    assert not list(root.rglob("*.pep-previous"))
    assert end_state(root, server, serial) == "provisioned"
    assert_no_wasted_identity(server, {serial: root})


def test_an_old_identity_is_still_replaced(tmp_path: Path, server: SimServer) -> None:
    """Case 4's other side: an installed identity the server does not hold is an old one."""
    root, serial = tmp_path / "gw", "GW-REFLASHED"
    first = start_server(tmp_path / "first")
    try:
        assert provision(root, first.url, serial, fcc_command()).returncode == 0
    finally:
        first.stop()
    (root / STATE_DIR / "provisioned").unlink()
    old = json.loads((root / IDENTITY).read_text())["enrollmentID"]
    out = provision(root, server.url, serial, fcc_command())
    assert out.returncode == 0, out.stderr
    assert json.loads((root / IDENTITY).read_text())["enrollmentID"] != old
    assert end_state(root, server, serial) == "provisioned"
    assert_no_wasted_identity(server, {serial: root})


def _sealings(root: Path) -> int:
    return sum("--setup-keys" in line for line in service_log(root))


def test_a_refused_reprovision_keeps_the_sealing_key(tmp_path: Path, server: SimServer) -> None:
    """Case 8: the checks ran `journalctl --setup-keys --force` before refusing."""
    root, serial = tmp_path / "gw", "GW-SEALED"
    fss = agent_env(PEP_FSS="true")
    assert provision(root, server.url, serial, fcc_command(), env=fss).returncode == 0
    assert _sealings(root) == 1
    args = ["reprovision", "--root", str(root), "--server", server.url, "--serial", serial,
            "--interface", "lo", "--no-reboot", "--fcc-command", fcc_command(), "--yes"]
    out = run_agent(*args, env=fss)
    assert out.returncode == 15, out.stderr
    assert "nothing was changed" in out.stderr
    assert _sealings(root) == 1, "a refused reprovision replaced journald's sealing key"
    assert end_state(root, server, serial) == "provisioned"
    assert_no_wasted_identity(server, {serial: root})
    # Accepted (the record is gone on a fresh server): the key is replaced once, not twice.
    fresh = start_server(tmp_path / "fresh")
    try:
        args[args.index(server.url)] = fresh.url
        out = run_agent(*args, env=fss)
        assert out.returncode == 0, out.stderr
        assert _sealings(root) == 2
        assert_no_wasted_identity(fresh, {serial: root})
    finally:
        fresh.stop()


# --- a copy of an item lost at a power cut (BACKUP and WORKING hold the same bytes) -------

def _fcc_then(action: str) -> str:
    """FCC, then `action` run in its working directory (where its pal folder is)."""
    script = f'{shlex.join(fcc_argv())}; rc=$?; {action}; exit "$rc"'
    return shlex.join(["sh", "-c", script])


@pytest.mark.parametrize(("lost", "kept"), [("BACKUP", "WORKING"), ("WORKING", "BACKUP")])
def test_a_copy_lost_at_the_cut_is_repaired_from_its_twin(tmp_path: Path, server: SimServer,
                                                          lost: str, kept: str) -> None:
    """FCC writes every item to BACKUP and copies the same bytes to WORKING: a store that lost
    one of the two copies (its name not yet durable at a power cut) used to end in exit 22
    with the identity wasted. The missing copy is written again from its twin, then installed."""
    root, serial = tmp_path / "gw", f"GW-TWIN-{lost}"
    key = esfs.file_name("PrvKey_mbed.BootstrapDevicePrivateKey")
    endpoint = esfs.file_name("CfgParam_mbed.EndpointName")
    out = provision(root, server.url, serial,
                    _fcc_then(f"rm pal/{lost}/{key}; : > pal/{lost}/{endpoint}"))
    assert out.returncode == 0, out.stderr
    assert f"{lost}/{key} was missing or incomplete: written again from its copy in {kept}" \
        in out.stderr
    mcc = root / MCC
    for name in (key, endpoint):
        assert (mcc / lost / name).read_bytes() == (mcc / kept / name).read_bytes() != b""
        assert (mcc / lost / name).stat().st_mode == (mcc / kept / name).stat().st_mode
    assert esfs.check_pal(mcc) == []
    assert end_state(root, server, serial) == "provisioned"
    assert assert_no_wasted_identity(server, {serial: root}) == {serial: "installed"}


def test_a_store_without_a_sound_copy_is_still_refused(tmp_path: Path,
                                                       server: SimServer) -> None:
    """Both copies of an item broken: nothing to repair from, the honest exit 22 stays."""
    root, serial = tmp_path / "gw", "GW-TWIN-BOTH"
    key = esfs.file_name("PrvKey_mbed.BootstrapDevicePrivateKey")
    out = provision(root, server.url, serial, _fcc_then(f"rm pal/BACKUP/{key}; "
                                                        f": > pal/WORKING/{key}"))
    assert out.returncode == 22, out.stderr
    assert f"WORKING/{key}: empty" in out.stderr
    assert not (root / STATE_DIR / "provisioned").exists()
    assert assert_no_wasted_identity(server, {serial: root}) == {serial: "recovery-pending"}


# --- FCC's storage folder is synchronous while FCC runs, and no longer afterwards ---------

def test_fccs_folders_are_synchronous_while_it_stores_and_not_after(tmp_path: Path,
                                                                    server: SimServer) -> None:
    """FCC syncs no directory: on a file system without metadata ordering its new names could
    be lost at a cut after the server deployed the record. Its working directory carries the
    synchronous-update attributes (inherited from the folder of mcc_config) while it runs;
    after the install no folder there keeps them (files keep the sync one)."""
    if not sync_attributes_supported(tmp_path):
        pytest.skip("the temporary folder's file system has no synchronous-update attributes")
    root, serial = tmp_path / "gw", "GW-SYNC-ATTR"
    seen = tmp_path / "flags-seen"
    probe = ("import pathlib, sys; from pep_agent.system.syncflags import synchronous_flags as f; "
             "pathlib.Path(sys.argv[1]).write_text(str(f(pathlib.Path('.'))))")
    fcc = shlex.join(["sh", "-c", f'{shlex.join([sys.executable, "-c", probe, str(seen)])} && '
                                  f'exec {shlex.join(fcc_argv())}'])
    out = provision(root, server.url, serial, fcc)
    assert out.returncode == 0, out.stderr
    assert int(seen.read_text()) == SYNCHRONOUS
    parent = (root / MCC).parent
    for path in (parent, *parent.rglob("*")):
        assert synchronous_flags(path) == (FS_SYNC_FL if path.is_file() else 0), path
    assert_no_wasted_identity(server, {serial: root})
