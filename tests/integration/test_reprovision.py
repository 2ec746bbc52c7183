"""reprovision on a provisioned gateway: it checks everything before it
changes anything, and a run that fails before the new identity is installed puts the old one
back (Parsec state included) with edge-core released and restarted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.agentprocs import agent_env, free_port, run_agent, service_log
from tests.endstate import IDENTITY, MCC, STATE_DIR, assert_no_wasted_identity, end_state
from tests.simprocs import SimServer, fcc_command, start_server

SERIAL = "GW-REPRO"
PARSEC_STATE = "userdata/parsec"


def _fcc(root: Path, parsec: bool) -> str:
    return fcc_command(parsec=True, mcc_config=root / MCC) if parsec else fcc_command()


def _run(verb: str, root: Path, url: str, *more: str, serial: str | None = SERIAL,
         fcc: str | None = None, parsec: bool = False, env: dict[str, str] | None = None,
         ) -> tuple[int, str]:
    args = [verb, "--root", str(root), "--server", url, "--interface", "lo", "--no-reboot",
            "--fcc-command", fcc or _fcc(root, parsec), "--parsec" if parsec else "--no-parsec"]
    if serial is not None:
        args += ["--serial", serial]
    if verb == "reprovision":
        args.append("--yes")
    out = run_agent(*args, *more, env=env or agent_env())
    return out.returncode, out.stderr


def _provisioned(root: Path, server: SimServer, parsec: bool = False) -> None:
    if parsec:
        # The TPM-backed state upstream's reprovision erases: ours must come back on failure.
        (root / PARSEC_STATE).mkdir(parents=True)
        (root / PARSEC_STATE / "tpm-state").write_text("old TPM state")
    code, err = _run("provision", root, server.url, parsec=parsec)
    assert code == 0, err


def _tree(root: Path) -> dict[str, str]:
    """Every path under the root with its content (the journal without its timestamp)."""
    found = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if rel == f"{STATE_DIR}/lock":
            continue  # the run lock records the pid of whoever held it last
        if path.is_dir():
            found[rel] = "<dir>"
        elif rel == f"{STATE_DIR}/state.json":
            doc = json.loads(path.read_text())
            doc.pop("updated_at", None)
            found[rel] = json.dumps(doc, sort_keys=True)
        else:
            found[rel] = path.read_text(errors="replace")
    return found


@pytest.mark.parametrize("problem", ["unreachable-server", "no-serial", "missing-fcc",
                                     "record-on-server"])
def test_reprovision_checks_before_it_changes_anything(tmp_path: Path, server: SimServer,
                                                       problem: str) -> None:
    root = tmp_path / "gw"
    _provisioned(root, server)
    before = _tree(root)
    url, serial, fcc = server.url, SERIAL, None
    expected = {"unreachable-server": 14, "no-serial": 10, "missing-fcc": 12,
                "record-on-server": 15}[problem]
    if problem == "unreachable-server":
        url = f"http://127.0.0.1:{free_port()}"
    elif problem == "no-serial":
        serial = None
    elif problem == "missing-fcc":
        fcc = str(tmp_path / "no-such-fcc")
    code, err = _run("reprovision", root, url, serial=serial, fcc=fcc)
    assert code == expected, err
    assert "Traceback" not in err
    if problem == "record-on-server":
        record = server.get("/v3/enrollment-id", serialNumber=SERIAL).text
        assert f"remove the record of serial {SERIAL} on the pep server" in err
        assert record in err and "nothing was changed" in err
    assert _tree(root) == before, "reprovision changed the gateway although a check failed"
    assert end_state(root, server, SERIAL) == "provisioned"
    assert_no_wasted_identity(server, {SERIAL: root})


@pytest.mark.parametrize("parsec", [False, True], ids=["pal", "parsec"])
def test_a_failed_reprovision_restores_the_previous_identity(tmp_path: Path, server: SimServer,
                                                             parsec: bool) -> None:
    root = tmp_path / "gw"
    _provisioned(root, server, parsec)
    old = {p: (root / p).read_bytes() for p in (IDENTITY, f"{STATE_DIR}/provisioned")}
    old_store = {str(p.relative_to(root)): p.read_bytes()
                 for p in sorted((root / MCC).rglob("*")) if p.is_file()}
    # The record was removed on the server (a fresh one holds none); its injections now fail.
    fresh = start_server(tmp_path / "fresh", fail_injection_next=5)
    try:
        ops_before = len(service_log(root))
        code, err = _run("reprovision", root, fresh.url, parsec=parsec,
                         env=agent_env(PEP_INJECTION_RETRIES="0"))
        assert code == 16, err
        assert "the previous identity was restored" in err
        assert {p: (root / p).read_bytes() for p in old} == old
        assert {str(p.relative_to(root)): p.read_bytes() for p in sorted((root / MCC).rglob("*"))
                if p.is_file()} == old_store
        if parsec:
            assert (root / PARSEC_STATE / "tpm-state").read_text() == "old TPM state"
        assert not list(root.rglob("*.pep-previous")), "backups left behind"
        ops = [line.split()[:2] for line in service_log(root)[ops_before:]]
        assert ["hold", "edge-core.service"] in ops
        assert ops[-2:] == [["release", "edge-core.service"], ["restart", "edge-core.service"]]
        assert_no_wasted_identity(fresh, {SERIAL: root}, previous=SERIAL)
        assert_no_wasted_identity(server, {SERIAL: root})
    finally:
        fresh.stop()


def test_reprovision_once_the_record_is_gone(tmp_path: Path, server: SimServer) -> None:
    root = tmp_path / "gw"
    _provisioned(root, server)
    fresh = start_server(tmp_path / "fresh")
    try:
        code, err = _run("reprovision", root, fresh.url)
        assert code == 0, err
        assert end_state(root, fresh, SERIAL) == "provisioned"
        assert not list(root.rglob("*.pep-previous"))
        assert service_log(root)[-2:] == ["restart edge-core.service",
                                          "restart wait-for-edge-identity.service"]
        assert_no_wasted_identity(fresh, {SERIAL: root})
    finally:
        fresh.stop()
