"""`pep-agent verify` and `status` as real processes against a stub edge-core status endpoint.

verify records only its own fields, under the run lock, on the journal as it is when the poll
ends, for the serial that is installed; status shows a failed verify and trusts the markers.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pep_agent.exit_codes import Exit
from pep_agent.settings.config import load_settings
from pep_agent.settings.paths import Paths
from pep_agent.system.lock import RunLock
from tests.agentprocs import agent_env, run_agent
from tests.edgestatus import ScriptedStatus, scripted_status

SECRET = "SECRET-DEVICE-KEY-9f3c"


@pytest.fixture
def edge() -> Iterator[ScriptedStatus]:
    with scripted_status({"status": "connecting", "endpoint-name": "SN-1"}) as scripted:
        yield scripted


class Gateway:
    """A sandbox root provisioned as `serial`: identity.json, marker, journal."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.paths = Paths(root)
        settings = load_settings({"root": str(root)}, environ={})
        self.identity = settings.paths.under(settings.profile.identity_json)

    def provisioned_as(self, serial: str, *, journal: dict[str, Any] | None = None) -> None:
        self.identity.parent.mkdir(parents=True, exist_ok=True)
        self.identity.write_text(json.dumps({"serialNumber": serial, "enrollmentID": "E-" + serial,
                                             "deviceKey": SECRET}))
        self.paths.state_dir.mkdir(parents=True, exist_ok=True)
        self.paths.provisioned_marker.write_text(serial + "\n")
        if journal is not None:
            self.paths.journal.write_text(json.dumps(journal))

    def journal(self) -> dict[str, Any]:
        return dict(json.loads(self.paths.journal.read_text()))

    def verify(self, edge: ScriptedStatus, timeout: float = 1.0) -> Any:
        out = run_agent("verify", "--root", str(self.root), "--timeout", str(timeout),
                        env=agent_env(PEP_STATUS_URL=edge.url))
        assert SECRET not in out.stdout + out.stderr
        return out

    def status(self, *more: str) -> Any:
        return run_agent("status", "--root", str(self.root), *more)


def provisioned_journal(serial: str, run_id: str) -> dict[str, Any]:
    return {"schema": 1, "state": "provisioned", "step": "reboot", "serial": serial,
            "run_id": run_id, "enrollment_id": "E-" + serial, "steps": {}, "error": None}


@pytest.fixture
def gateway(tmp_path: Path) -> Gateway:
    return Gateway(tmp_path / "root")


def test_a_reprovision_during_the_poll_is_not_undone(gateway: Gateway,
                                                     edge: ScriptedStatus) -> None:
    gateway.provisioned_as("SN-1", journal=provisioned_journal("SN-1", "old"))
    new = provisioned_journal("SN-2", "new")

    def reprovision() -> None:  # what a reprovision to another serial leaves behind
        gateway.provisioned_as("SN-2", journal=new)

    edge.on_first = reprovision
    out = gateway.verify(edge)

    assert edge.requests >= 1
    assert gateway.journal() == new
    assert not gateway.paths.verified_marker.exists()
    assert out.returncode == int(Exit.VERIFICATION), out.stderr
    assert "reprovisioned" in out.stderr and "SN-2" in out.stderr


def test_a_journal_change_during_the_poll_survives_a_failed_verify(gateway: Gateway,
                                                                   edge: ScriptedStatus) -> None:
    gateway.provisioned_as("SN-1", journal=provisioned_journal("SN-1", "old"))

    def another_run_writes() -> None:  # same serial; another run's fields must survive
        journal = gateway.journal()
        journal.update(run_id="newer", note="written during the poll")
        gateway.paths.journal.write_text(json.dumps(journal))

    edge.on_first = another_run_writes
    out = gateway.verify(edge)

    assert out.returncode == int(Exit.VERIFICATION), out.stderr
    journal = gateway.journal()
    assert journal["run_id"] == "newer" and journal["note"] == "written during the poll"
    assert journal["verify_state"] == "failed" and journal["verify_error"]["code"] == 20


def test_verify_takes_the_serial_from_the_installed_identity(gateway: Gateway,
                                                            edge: ScriptedStatus) -> None:
    # The journal still names the serial of an earlier run; identity.json is what edge-core uses.
    gateway.provisioned_as("SN-NEW", journal=provisioned_journal("SN-OLD", "old"))
    edge.replies = [{"status": "connected", "endpoint-name": "SN-NEW"}]

    out = gateway.verify(edge)

    assert out.returncode == 0, out.stderr
    assert gateway.paths.verified_marker.read_text() == "SN-NEW\n"
    assert gateway.journal()["state"] == "verified"


def test_the_marker_names_the_serial_without_identity_json(gateway: Gateway,
                                                          edge: ScriptedStatus) -> None:
    gateway.provisioned_as("SN-M")
    gateway.identity.unlink()
    edge.replies = [{"status": "connected", "endpoint-name": "SN-M"}]

    assert gateway.verify(edge).returncode == 0
    doc = json.loads(gateway.status("--json").stdout)
    assert doc["state"] == "verified" and doc["verify"]["state"] == "verified"


def test_verify_records_nothing_while_a_run_holds_the_lock(gateway: Gateway,
                                                          edge: ScriptedStatus) -> None:
    gateway.provisioned_as("SN-1", journal=provisioned_journal("SN-1", "old"))
    before = gateway.paths.journal.read_bytes()

    with RunLock(gateway.paths.lock):
        out = gateway.verify(edge)

    assert out.returncode == int(Exit.BUSY), out.stderr
    assert "nothing recorded" in out.stderr
    assert gateway.paths.journal.read_bytes() == before


def test_status_shows_a_failed_verify(gateway: Gateway, edge: ScriptedStatus) -> None:
    gateway.provisioned_as("SN-1", journal=provisioned_journal("SN-1", "old"))
    assert gateway.verify(edge).returncode == int(Exit.VERIFICATION)

    doc = json.loads(gateway.status("--json").stdout)
    assert doc["state"] == "provisioned"
    assert doc["verify"]["state"] == "failed"
    assert doc["verify"]["error"]["code"] == int(Exit.VERIFICATION)
    assert "connecting" in doc["verify"]["error"]["message"]
    text = gateway.status().stdout
    assert "verify:        failed: edge-core status stayed 'connecting'" in text
    assert "(exit 20)" in text


@pytest.mark.parametrize("journal", ["missing", "reset"])
def test_status_never_says_not_started_when_the_marker_exists(gateway: Gateway,
                                                              journal: str) -> None:
    gateway.provisioned_as("SN-1")
    if journal == "reset":
        gateway.paths.journal.write_text("{}\n")

    out = gateway.status("--json")
    doc = json.loads(out.stdout)

    assert doc["state"] == "provisioned" and doc["serial"] == "SN-1"
    assert out.returncode == 0
    assert "state:         provisioned" in gateway.status().stdout
