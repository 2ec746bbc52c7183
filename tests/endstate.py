"""What the fault-injection tests share: the end-state judge, journal and request-log readers,
and agents run in the background. Only the processes these helpers start are ever stopped."""

from __future__ import annotations

import json
import stat
import subprocess
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import psutil
import pytest

from pep_agent.gateway import esfs, install
from pep_agent.settings.paths import Paths
from pep_agent.settings.profiles import get_profile
from pep_agent.sim import esfs_codec
from tests.agentprocs import AGENT, service_log, status
from tests.simprocs import ENCRYPTED, SimServer, real_fcc, stored_endpoint

IDENTITY = "userdata/edge_gw_config/identity.json"
MCC = "userdata/mbed/mcc_config"
STATE_DIR = "userdata/pep-agent"
OLD_SERIAL = "OLD-GW-0"
WAIT_STEP = 0.05


def journal(root: Path) -> dict[str, Any]:
    """The agent's state journal, or {} before the first run."""
    path = root / STATE_DIR / "state.json"
    if not path.exists():
        return {}
    return dict(json.loads(path.read_text()))


def wait_until(what: str, check: Callable[[], bool], timeout: float,
               alive: Background | None = None) -> None:
    """Poll check() until it holds; fail after timeout, or as soon as the agent `alive` has
    exited (with the end of what it wrote on stderr)."""
    deadline = time.monotonic() + timeout
    while not check():
        if alive is not None and alive.process.poll() is not None:
            said = "\n".join(alive.err().splitlines()[-20:])
            pytest.fail(f"the agent exited ({alive.process.returncode}) before: {what}\n{said}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for: {what}")
        time.sleep(WAIT_STEP)


def identity_requests(server: SimServer, serial: str | None = None) -> list[dict[str, Any]]:
    """The server's request log entries for /v3/identity (for one serial when given)."""
    reply = server.get("/v3/requestLog")
    reply.raise_for_status()
    found = []
    for entry in reply.json():
        parts = urlsplit(entry["url"])
        if parts.path.rstrip("/").lower() != "/v3/identity":
            continue
        if serial is None or parse_qs(parts.query).get("serialNumber") == [serial]:
            found.append(dict(entry))
    return found


def identity_statuses(server: SimServer) -> list[int]:
    """HTTP statuses the server answered identity requests with (its access log lines)."""
    statuses = []
    for line in server.output.lines:
        if '"GET /v3/identity' in line:
            tail = line.rsplit('"', 1)[-1].split()
            if tail and tail[0].isdigit():
                statuses.append(int(tail[0]))
    return statuses


def fcc_process(data: dict[str, Any]) -> psutil.Process | None:
    """The FCC process a journal names, if that very process still runs (not a zombie)."""
    pid, started = data.get("fcc_pid"), data.get("fcc_started")
    if not isinstance(pid, int):
        return None
    try:
        p = psutil.Process(pid)
        if started is not None and abs(p.create_time() - float(started)) > 0.05:
            return None  # the pid was reused
        if p.status() == psutil.STATUS_ZOMBIE:
            return None
    except psutil.Error:
        return None
    return p


def end_leftover(p: psutil.Process | None) -> None:
    """Clean-up after a failed test: kill an FCC our agent started, if it still runs."""
    if p is not None and p.is_running():
        p.kill()
        p.wait(timeout=10)


def seed_old_identity(root: Path) -> None:
    """A previous identity on the gateway, which a new run must replace, never mix in."""
    typed = "CfgParam_mbed.EndpointName"
    for copy in ("BACKUP", "WORKING"):
        folder = root / MCC / copy
        folder.mkdir(parents=True)
        blob = esfs_codec.encode(typed, OLD_SERIAL.encode(), bytes(esfs.NONCE_SIZE))
        (folder / esfs.file_name(typed)).write_bytes(blob)
    ident = root / IDENTITY
    ident.parent.mkdir(parents=True)
    ident.write_text(json.dumps({"serialNumber": OLD_SERIAL, "enrollmentID": "A-old"}))
    ident.chmod(0o600)


def edge_core_ops(root: Path) -> list[str]:
    return [op.split()[0] for op in service_log(root)
            if op.split()[0] in ("hold", "release") and "edge-core" in op]


def end_state(root: Path, server: SimServer, serial: str) -> str:
    """"provisioned" or "not-provisioned", after checking it is exactly one of them."""
    ident, mcc = root / IDENTITY, root / MCC
    doc = status(root)
    if not ident.exists() and not mcc.exists():
        # "interrupted" when the failure could not even be written down (a full disk);
        # "not-started" when no journal could be created at all (a read-only state partition).
        allowed = ["failed", "interrupted"]
        if not (root / STATE_DIR / "state.json").exists():
            allowed.append("not-started")
        assert doc["state"] in allowed, f"nothing installed: {doc['state']}"
        if doc["state"] == "failed":
            assert doc["error"] and doc["error"]["code"] > 0, doc
        assert not (root / STATE_DIR / "provisioned").exists()
        return "not-provisioned"
    assert ident.is_file() and mcc.is_dir(), (
        f"half-installed: identity.json {'present' if ident.exists() else 'missing'}, "
        f"mcc_config {'present' if mcc.exists() else 'missing'}")
    assert stat.S_IMODE(ident.stat().st_mode) == 0o600
    data = json.loads(ident.read_text())
    assert data["serialNumber"] == serial, "identity.json is not from this run"
    endpoint = stored_endpoint(mcc / "WORKING")
    assert endpoint in (serial, ENCRYPTED if real_fcc() else None), \
        f"mcc_config holds {endpoint!r}, identity.json {serial!r}"
    record = server.get("/v3/enrollment-id", serialNumber=serial)
    assert record.status_code == 200, record.text
    assert data["enrollmentID"] == record.text.strip(), "enrollment id differs from the server's"
    ops = edge_core_ops(root)
    assert ops and ops[-1] == "release", f"edge-core left held: {ops}"
    assert (root / STATE_DIR / "provisioned").exists()
    assert doc["state"] == "provisioned" and doc["enrollment_id"] == data["enrollmentID"]
    assert not (root / STATE_DIR / "response.json").exists()
    assert not install.staging_dir(Paths(root), get_profile("lmp")).exists()
    return "provisioned"


def assert_no_wasted_identity(server: SimServer, gateways: dict[str, Path],
                              previous: str | None = None,
                              foreign: Collection[str] = ()) -> dict[str, str]:
    """The wasted-identity invariant: no identity the server handed out is lost, none is half-kept.

    For every serial the server holds a record for, its gateway has those credentials
    installed ("installed"), or staged with the journal saying an injection may have happened,
    which the next run recovers ("recovery-pending"). For every serial without a record, the
    gateway holds no staged credentials and is cleanly unprovisioned ("unprovisioned"), or back
    on its `previous` identity with edge-core released ("previous"). A `foreign` serial's record
    belongs to another gateway (the test made it): ours is judged as if there were none.
    Returns the verdicts.
    """
    verdicts = {}
    for serial, root in gateways.items():
        record = server.get("/v3/enrollment-id", serialNumber=serial)
        assert record.status_code in (200, 404), record.text
        ident, mcc = root / IDENTITY, root / MCC
        installed = json.loads(ident.read_text()) if ident.is_file() else {}
        # Staged: in FCC's staging folder, or (Parsec, or an install undone halfway) in
        # mcc_config without an identity.json beside it.
        staged = _staged_serial(root) or (None if ident.exists() else _credentials_of(mcc))
        pending = (journal(root).get("injection") or {}).get("serialNumber")
        if record.status_code == 200 and serial not in foreign:
            if (installed.get("serialNumber") == serial
                    and installed.get("enrollmentID") == record.text.strip()
                    and _credentials_of(mcc) in _stored_as(serial)):
                verdicts[serial] = "installed"
            else:
                assert pending == serial and staged in _stored_as(serial), (
                    f"WASTED IDENTITY: the server holds a record of {serial}, but the gateway "
                    f"has neither installed nor staged its credentials (installed "
                    f"{installed.get('serialNumber')!r}, staged {staged!r}, journal {pending!r})")
                verdicts[serial] = "recovery-pending"
            continue
        assert staged is None, f"credentials of {staged!r} staged although no record exists"
        assert not pending, "the journal expects a recovery although the server has no record"
        if previous is not None and installed.get("serialNumber") == previous:
            ops = edge_core_ops(root)
            assert ops and ops[-1] == "release", f"edge-core not released: {ops}"
            verdicts[serial] = "previous"
        else:
            assert not ident.exists() and not mcc.exists(), (
                f"{serial} has no record, yet the gateway holds an identity or credentials")
            assert not (root / STATE_DIR / "provisioned").exists()
            verdicts[serial] = "unprovisioned"
    return verdicts


def _stored_as(serial: str) -> tuple[str, ...]:
    """What _credentials_of gives for credentials of `serial`: the real FCC's are encrypted."""
    return (serial, "<parsec>", ENCRYPTED) if real_fcc() else (serial, "<parsec>")


def _credentials_of(mcc: Path) -> str | None:
    """The endpoint name in FCC's stored credentials (pal/WORKING, or a Parsec store's pst),
    "<parsec>" for a Parsec store without one yet, or None."""
    typed = "CfgParam_mbed.EndpointName"
    if (mcc / "WORKING" / esfs.file_name(typed)).is_file():
        return stored_endpoint(mcc / "WORKING")
    if (mcc / "pst" / "mbed.EndpointName").is_file():
        return (mcc / "pst" / "mbed.EndpointName").read_text().strip()
    return "<parsec>" if (mcc / "pst").exists() else None


def _staged_serial(root: Path) -> str | None:
    """Whose credentials wait in staging (or were put back there), if any."""
    return _credentials_of(install.staged_pal(Paths(root), get_profile("lmp")))


def provision_argv(root: Path, server_url: str, serial: str, fcc: str) -> list[str]:
    """The argv tests.agentprocs.provision runs, for agents started in the background."""
    return [*AGENT, "provision", "--root", str(root), "--server", server_url, "--serial", serial,
            "--interface", "lo", "--fcc-command", fcc, "--no-reboot"]


@dataclass
class Background:
    """An agent run in the background; its output goes to files (pipes could fill up)."""

    process: subprocess.Popen[bytes]
    stdout: Path
    stderr: Path

    def wait(self, timeout: float) -> int:
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"the agent did not end within {timeout:g} s:\n{self.err()}")

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def err(self) -> str:
        return self.stderr.read_text(errors="replace")

    def out(self) -> str:
        return self.stdout.read_text(errors="replace")


def start_agent(argv: list[str], logs: Path, env: dict[str, str]) -> Background:
    logs.mkdir(parents=True, exist_ok=True)
    out, err = logs / "agent.out", logs / "agent.err"
    with out.open("wb") as o, err.open("wb") as e:
        child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=o, stderr=e, env=env)
    return Background(child, out, err)


def has_retried(root: Path, failures: int = 1) -> bool:
    """The agent's identity request has failed `failures` times (its journal says so)."""
    data = journal(root)
    attempt = int(data.get("attempt") or 0)
    return attempt > failures or (attempt == failures and data.get("next_retry_in") is not None)
