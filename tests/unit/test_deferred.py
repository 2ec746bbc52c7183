"""The deferred state: an installed identity for this serial, no marker, and a server that
cannot be asked whether it holds it. The run changes nothing (exit 27); `status`, the LED and
sd_notify say "deferred", not "failed"; a later run that the server confirms clears it."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from pep_agent import report
from pep_agent.errors import PepError
from pep_agent.exit_codes import TABLE, Exit
from pep_agent.flow import Context, provision
from pep_agent.gateway import install
from pep_agent.system.led_signals import RGB, SINGLE, STATES
from pep_agent.system.notify import Notifier
from tests.fakes import (
    GOOD,
    FakeLed,
    ScriptedClient,
    make_context,
    stage_credentials,
    transient,
)


def _lost_state(tmp_path: Path) -> None:
    """A provisioned gateway whose state directory was lost (the marker and the journal)."""
    holder: list[Context] = []

    def inject() -> None:  # the server stores FCC's credentials before it answers
        if not install.credentials_ready(holder[0].paths, holder[0].profile, False):
            stage_credentials(holder[0])

    ctx, _ = make_context(tmp_path, ScriptedClient(GOOD, on_identity=inject))
    holder.append(ctx)
    assert provision(ctx) == "provisioned"
    ctx.paths.provisioned_marker.unlink()
    ctx.paths.journal.unlink()


def _notify_socket(tmp_path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify"))
    sock.setblocking(False)
    return sock


def _datagrams(sock: socket.socket) -> list[str]:
    out = []
    while True:
        try:
            out.append(sock.recv(4096).decode())
        except BlockingIOError:
            return out


def test_an_unconfirmed_identity_is_deferred_and_a_confirmation_clears_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _lost_state(tmp_path)
    sock = _notify_socket(tmp_path)
    try:
        far, _ = make_context(tmp_path, ScriptedClient(records={"SN-1": transient()}))
        monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify"))
        far.notifier = Notifier()
        with pytest.raises(PepError) as raised:
            provision(far)
        assert raised.value.code == Exit.UNCONFIRMED
        sent = _datagrams(sock)
    finally:
        sock.close()
    assert any(d.startswith("STATUS=deferred: ") for d in sent), sent
    assert not any(d.startswith("STATUS=failed") for d in sent), sent
    assert isinstance(far.led, FakeLed) and far.led.shown[-1] == "deferred"

    doc = report.status_document(far.paths)
    assert doc["state"] == "deferred" and doc["serial"] == "SN-1"
    assert doc["error"]["code"] == int(Exit.UNCONFIRMED)
    code = report.exit_code(doc["state"])
    assert code == Exit.STATUS_DEFERRED and code not in (Exit.OK, Exit.STATUS_FAILED)
    text = report.human(doc)
    assert text.startswith("state:         deferred\n")
    assert "serial:        SN-1" in text and "error:" not in text
    assert "nothing was changed" in text and "hint:" in text

    # The server is back and holds this identity: the marker is rewritten, nothing is left
    # of the deferral.
    near, _ = make_context(tmp_path, ScriptedClient(records={"SN-1": GOOD["enrollmentID"]}))
    assert provision(near) == "already-provisioned"
    doc = report.status_document(near.paths)
    assert doc["state"] == "provisioned" and report.exit_code(doc["state"]) == Exit.OK
    assert doc["error"] is None
    text = report.human(doc)
    assert "error" not in text and "hint" not in text and "nothing was changed" not in text


def test_the_deferred_state_has_its_own_codes_and_led() -> None:
    row = TABLE[Exit.UNCONFIRMED]
    assert row.restarted is False and row.blinks is None and "`deferred`" in row.led
    assert TABLE[Exit.STATUS_DEFERRED].restarted is None
    assert int(Exit.STATUS_DEFERRED) not in {int(c) for c in Exit if c != Exit.STATUS_DEFERRED}
    assert "deferred" in STATES
    # Distinct from every other state on one LED and on a triplet.
    assert [s for s in STATES if SINGLE[s] == SINGLE["deferred"]] == ["deferred"]
    assert [s for s in STATES if RGB[s] == RGB["deferred"]] == ["deferred"]
