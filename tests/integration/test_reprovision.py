"""reprovision on a provisioned gateway: it checks everything before it
changes anything, and a run that fails before the new identity is installed puts the old one
back (Parsec state included) with edge-core released and restarted, on disk even across a
power cut; whatever run finishes the job leaves nothing aside."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.agentprocs import (
    AGENT,
    NO_INJECTION,
    SERVER_AWAY,
    agent_env,
    free_port,
    run_agent,
    service_log,
)
from tests.crash import explore, fsmodel, trace
from tests.endstate import (
    IDENTITY,
    MCC,
    STATE_DIR,
    assert_no_wasted_identity,
    end_state,
    journal,
    start_agent,
    wait_until,
)
from tests.simprocs import SimServer, fcc_command, start_server

SERIAL = "GW-REPRO"
PARSEC_STATE = "userdata/parsec"


def _fcc(root: Path, parsec: bool, sim: bool = False) -> str:
    return fcc_command(parsec=True, mcc_config=root / MCC) if parsec else fcc_command(sim=sim)


def _args(verb: str, root: Path, url: str, serial: str | None = SERIAL, fcc: str | None = None,
          parsec: bool = False) -> list[str]:
    args = [verb, "--root", str(root), "--server", url, "--interface", "lo", "--no-reboot",
            "--fcc-command", fcc or _fcc(root, parsec), "--parsec" if parsec else "--no-parsec"]
    if serial is not None:
        args += ["--serial", serial]
    if verb == "reprovision":
        args.append("--yes")
    return args


def _run(verb: str, root: Path, url: str, *more: str, serial: str | None = SERIAL,
         fcc: str | None = None, parsec: bool = False, env: dict[str, str] | None = None,
         ) -> tuple[int, str]:
    out = run_agent(*_args(verb, root, url, serial, fcc, parsec), *more, env=env or agent_env())
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


@pytest.mark.parametrize("parsec", [False, True], ids=["pal", "parsec"])
def test_a_provision_after_a_killed_reprovision_leaves_nothing_aside(tmp_path: Path,
                                                                     server: SimServer,
                                                                     parsec: bool) -> None:
    """A reprovision killed while its request waits at the server; a later provision finishes
    the job and keeps no `*.pep-previous` (markers and Parsec state included)."""
    root = tmp_path / "gw"
    _provisioned(root, server, parsec)
    # The record was removed on the server, which holds the request before creating a new one:
    # the kill lands with the old identity aside and no record made.
    holding = start_server(tmp_path / "holding", delay=600)
    try:
        run = start_agent([*AGENT, *_args("reprovision", root, holding.url, parsec=parsec)],
                          tmp_path / "killed", agent_env())
        try:
            wait_until("the identity request journalled",
                       lambda: bool(journal(root).get("injection")), 60, alive=run)
        finally:
            run.kill()
    finally:
        holding.stop()
    assert list(root.rglob("*.pep-previous")), "the kill came before anything was set aside"
    fresh = start_server(tmp_path / "fresh")
    try:
        code, err = _run("provision", root, fresh.url, parsec=parsec)
        assert code == 0, err
        if not parsec:  # end_state reads a pal store
            assert end_state(root, fresh, SERIAL) == "provisioned"
        assert (root / STATE_DIR / "provisioned").exists()
        assert not list(root.rglob("*.pep-previous")), "backups left behind"
        assert assert_no_wasted_identity(fresh, {SERIAL: root}) == {SERIAL: "installed"}
    finally:
        fresh.stop()


def test_a_provision_after_a_reprovision_against_a_failing_server_leaves_nothing_aside(
        tmp_path: Path, server: SimServer) -> None:
    """Every identity request answered 503: the reprovision fails; once the server works, the
    next provision ends with one identity installed and nothing aside."""
    root = tmp_path / "gw"
    _provisioned(root, server)
    failing = start_server(tmp_path / "failing", fail_next=1_000_000, fail_status=503)
    try:
        code, err = _run("reprovision", root, failing.url,
                         env=agent_env(**SERVER_AWAY, **NO_INJECTION))
        assert code != 0, err
        failing.set_faults(fail_next=0)
        code, err = _run("provision", root, failing.url)
        assert code == 0, err
        assert (root / STATE_DIR / "provisioned").exists()
        assert not list(root.rglob("*.pep-previous")), "backups left behind"
        # The new identity, or the previous one put back by the failed reprovision.
        assert_no_wasted_identity(failing, {SERIAL: root}, previous=SERIAL)
    finally:
        failing.stop()


def _files(tree: fsmodel.Tree, top: str) -> dict[str, bytes]:
    """The files at or below `top` in a crash state, by path relative to it."""
    return {path[len(top):]: content for path, (kind, _, content) in tree.items()
            if kind == "f" and (path == top or path.startswith(top + "/"))}


@pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace")
@pytest.mark.parametrize("parsec", [False, True], ids=["pal", "parsec"])
def test_a_restored_identity_is_on_disk_when_reprovision_returns(tmp_path: Path,
                                                                 server: SimServer,
                                                                 parsec: bool) -> None:
    """A failed reprovision, recorded under strace: in every state a power cut could leave,
    each part of the previous identity is whole in its place or aside; once the run has
    returned, it is back in place even on a file system that does not order metadata."""
    root = (tmp_path / "gw").resolve()
    _provisioned(root, server, parsec)
    initial = fsmodel.snapshot(root)
    places = [MCC, "userdata/edge_gw_config", f"{STATE_DIR}/provisioned"]
    if parsec:
        places.append(PARSEC_STATE)
    start = fsmodel.build(initial, [], 0, lambda i: True, True)
    before = {place: _files(start, place) for place in places}
    assert all(before.values()), before.keys()
    fresh = start_server(tmp_path / "fresh", fail_injection_next=5)
    log = tmp_path / "strace.log"
    try:
        out = subprocess.run(
            # sim fcc: the model replays the file calls it makes.
            [*explore.strace_argv(log), *AGENT, *_args("reprovision", root, fresh.url,
                                                       fcc=_fcc(root, parsec, sim=True),
                                                       parsec=parsec)],
            capture_output=True, text=True, timeout=explore.RUN_TIMEOUT, check=False,
            env=agent_env(PEP_INJECTION_RETRIES="0", **explore.TRACED),
            stdin=subprocess.DEVNULL)
        assert out.returncode == 16, out.stderr
        assert "the previous identity was restored" in out.stderr
        _check_power_cuts(root, initial, log.read_text(), before)
        assert_no_wasted_identity(fresh, {SERIAL: root}, previous=SERIAL)
    finally:
        fresh.stop()


def _check_power_cuts(root: Path, initial: dict[int, fsmodel.Inode], log: str,
                      before: dict[str, dict[str, bytes]]) -> None:
    """Each of `before`'s places whole, in place or aside, in every crash state of the run
    the strace `log` recorded; in place in every state at its end."""
    umask = os.umask(0)
    os.umask(umask)
    recorder = fsmodel.Recorder(root, initial, umask)
    for call in trace.parse(log):
        recorder.feed(call)
    ops = recorder.ops
    seen: set[str] = set()
    ends = 0
    for key, state in fsmodel.crash_states({**initial, **recorder.born}, ops, len(ops) + 1,
                                           explore.reboot_empties):
        where = (f"{state.model} after op {state.point} "
                 f"({ops[state.point - 1].text if state.point else 'none'})")
        if state.point == len(ops):
            ends += 1
            for place, content in before.items():
                assert _files(state.tree, place) == content, (
                    f"{place} is not back in place when the run returned: {where}")
        if key in seen:
            continue
        seen.add(key)
        for place, content in before.items():
            assert content in (_files(state.tree, place),
                               _files(state.tree, place + ".pep-previous")), (
                f"{place} is neither whole in place nor aside: {where}")
    assert ends, "no state at the end of the run"
    print(f"\n{len(ops)} operations, {len(seen)} distinct crash states", file=sys.stderr)


# Every way the new identity's request can end without a usable answer: the server answering
# 503 or 502 to every request, the connection cut before the server read the request, cut
# after the injection (the server keeps its record), and an answer held back past the
# agent's HTTP timeout (the injection done, the answer never read).
ENDINGS = {"503": {"fail_next": 1000, "fail_status": 503},
           "502": {"fail_next": 1000, "fail_status": 502},
           "cut-before": {"drop_next": 1000},
           "cut-after-injection": {"drop_after_next": 1},
           "answer-past-the-timeout": {"answer_delay": 8.0}}
# Those where the server injects nothing: FCC never exits, and the wait for it (NO_INJECTION
# keeps it short) is not what they test.
NOTHING_INJECTED = ("503", "502", "cut-before")


@pytest.mark.parametrize("ending", list(ENDINGS))
def test_a_reprovision_whose_request_ends_badly_keeps_a_working_identity(
        tmp_path: Path, server: SimServer, ending: str) -> None:
    """The end state is the new identity or the old one, installed and working, as the new
    server's records say: never a gateway without an identity."""
    root = tmp_path / "gw"
    _provisioned(root, server)
    old = (root / IDENTITY).read_bytes()
    fresh = start_server(tmp_path / "fresh", **ENDINGS[ending])
    try:
        code, err = _run("reprovision", root, fresh.url,
                         env=agent_env(PEP_SERVER_DEADLINE="4", PEP_HTTP_TIMEOUT="4",
                                       PEP_INJECTION_RETRIES="0",
                                       **(NO_INJECTION if ending in NOTHING_INJECTED else {})))
        fresh.set_faults(fail_next=0, drop_next=0, drop_after_next=0, answer_delay=0)
        record = fresh.get("/v3/enrollment-id", serialNumber=SERIAL)
        if record.status_code == 200:
            # The server holds the new identity: installed, or staged for the next run.
            verdict = assert_no_wasted_identity(fresh, {SERIAL: root})[SERIAL]
            if verdict == "recovery-pending":
                code, err = _run("provision", root, fresh.url)
            assert code == 0, err
            assert end_state(root, fresh, SERIAL) == "provisioned"
            assert json.loads((root / IDENTITY).read_text())["enrollmentID"] == \
                record.text.strip()
        else:
            assert code != 0 and "the previous identity was restored" in err, err
            assert (root / IDENTITY).read_bytes() == old
            assert (root / f"{STATE_DIR}/provisioned").read_text() == f"{SERIAL}\n"
            assert_no_wasted_identity(fresh, {SERIAL: root}, previous=SERIAL)
        assert not list(root.rglob("*.pep-previous")), "backups left behind"
    finally:
        fresh.stop()
