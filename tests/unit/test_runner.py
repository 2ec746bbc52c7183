"""Whole runs on fakes (clock, server, FCC, network; the sandbox service manager): the steps
in order, a bug anywhere ending the run as failed, reprovision's restore-or-keep, adoption."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import pytest

from pep_agent.errors import PepError, ServerError
from pep_agent.exit_codes import Exit
from pep_agent.flow import Context, provision, recovery, runner
from pep_agent.flow.steps import STEP_NAMES, STEPS
from pep_agent.gateway import esfs, install
from pep_agent.gateway.backup import aside
from pep_agent.reprovision import reprovision
from pep_agent.sim import esfs_codec
from tests.fakes import (
    GOOD,
    NONCE,
    FakeLed,
    ScriptedClient,
    make_context,
    stage_credentials,
    transient,
)


def _injecting(*answers: object, **kw: object) -> tuple[ScriptedClient, list[Context]]:
    """A server that stores FCC's credentials (the injection) before each answer."""
    holder: list[Context] = []
    client = ScriptedClient(*answers, on_identity=lambda: _inject(holder[0]), **kw)
    return client, holder


def _inject(ctx: Context) -> None:
    if not install.credentials_ready(ctx.paths, ctx.profile, False):
        stage_credentials(ctx)


def _provisioned(tmp_path: Path) -> Context:
    client, holder = _injecting(GOOD)
    ctx, _ = make_context(tmp_path, client)
    holder.append(ctx)
    assert provision(ctx) == "provisioned"
    return ctx


def _services(ctx: Context) -> list[str]:
    return [" ".join(line.split()[1:]) for line in
            ctx.paths.sandbox_services.read_text().splitlines()]


def test_a_run_goes_through_every_step_in_order(tmp_path: Path) -> None:
    ctx = _provisioned(tmp_path)
    j = ctx.journal.data
    assert list(j["steps"]) == list(STEP_NAMES)
    assert all(step["status"] == "done" for step in j["steps"].values())
    assert j["state"] == "provisioned" and j["injection"] is None
    assert j["interface"] == "eth0" and j["ip"] == "10.0.0.5" and j["fcc_ip"] == "10.0.0.5"
    assert ctx.paths.provisioned_marker.read_text() == "SN-1\n"
    identity = json.loads(ctx.paths.under(ctx.profile.identity_json).read_text())
    assert identity == GOOD
    assert not ctx.paths.saved_response.exists()
    unit = ctx.profile.edge_core_unit
    assert _services(ctx) == [f"hold {unit}", f"release {unit}"]
    assert isinstance(ctx.led, FakeLed) and ctx.led.shown[-1] == "success"


def test_a_rerun_of_a_provisioned_gateway_changes_nothing(tmp_path: Path) -> None:
    _provisioned(tmp_path)
    ctx, _ = make_context(tmp_path, ScriptedClient())
    assert provision(ctx) == "already-provisioned"
    assert ctx.client_factory().queries == []  # type: ignore[attr-defined]


@pytest.mark.parametrize("where", ["step", "plan"])
def test_a_bug_anywhere_ends_the_run_failed_and_loud(tmp_path: Path, where: str,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    ctx, _ = make_context(tmp_path, ScriptedClient())

    def broken(*_: object) -> None:
        raise KeyError("a bug")

    if where == "step":
        monkeypatch.setattr(runner, "STEPS", tuple(
            dataclasses.replace(s, run=broken) if s.name == "clear-identity" else s
            for s in STEPS))
    else:
        monkeypatch.setattr(recovery, "decide", broken)
    with caplog.at_level(logging.ERROR), pytest.raises(PepError) as raised:
        provision(ctx)
    assert raised.value.code == Exit.INTERNAL and "KeyError" in raised.value.message
    assert ctx.journal.data["state"] == "failed"
    assert ctx.journal.data["error"]["code"] == int(Exit.INTERNAL)
    assert json.loads(ctx.paths.journal.read_text())["state"] == "failed"
    assert isinstance(ctx.led, FakeLed) and ctx.led.shown[-1].startswith("failed")
    traced = [r for r in caplog.records if r.levelno == logging.ERROR and r.exc_info]
    assert len(traced) == 1 and "a bug" in str(traced[0].exc_info[1])  # type: ignore[index]
    if where == "step":
        assert ctx.journal.data["steps"]["clear-identity"]["status"] == "failed"


def test_a_failed_reprovision_restores_the_previous_identity(tmp_path: Path) -> None:
    old = _provisioned(tmp_path)
    identity = old.paths.under(old.profile.identity_json)
    before = identity.read_bytes()
    # FCC cannot start: the run fails before any request left.
    ctx, _ = make_context(tmp_path, ScriptedClient(), network={"eth0": ["10.0.0.5"]})
    ctx.launch_fcc.address = ("10.9.9.9", 4000)  # type: ignore[attr-defined]
    with pytest.raises(PepError) as raised:
        reprovision(ctx)
    assert raised.value.code == Exit.NETWORK
    assert "the previous identity was restored" in raised.value.hint
    assert identity.read_bytes() == before
    assert ctx.paths.provisioned_marker.read_text() == "SN-1\n"
    assert ctx.journal.data["restored_previous"] is True
    assert ctx.journal.data["state"] == "failed"
    # The checks ran once: the plan's first steps took their findings.
    assert ctx.journal.data["serial_source"]


def test_reprovision_takes_the_parsec_units_and_state_from_the_profile(tmp_path: Path) -> None:
    _provisioned(tmp_path)
    ctx, _ = make_context(tmp_path, ScriptedClient(), PEP_PARSEC="true")
    profile = dataclasses.replace(ctx.profile, parsec_unit="keys.service",
                                  swtpm_unit="tpm.service", parsec_state="/data/tpm")
    ctx.settings = dataclasses.replace(ctx.settings, profile=profile)
    state = tmp_path / "data/tpm/state"
    state.parent.mkdir(parents=True)
    state.write_text("old TPM state")
    ctx.launch_fcc.address = ("10.9.9.9", 4000)  # type: ignore[attr-defined]
    with pytest.raises(PepError) as raised:
        reprovision(ctx)
    assert "the previous identity was restored" in raised.value.hint
    assert state.read_text() == "old TPM state"
    assert not list(tmp_path.rglob("*.pep-previous"))
    units = [s for s in _services(ctx) if s.split()[1] in ("keys.service", "tpm.service")]
    twice = ["stop keys.service", "stop tpm.service", "start tpm.service", "start keys.service"]
    assert units == twice * 2  # set aside, then restored


def test_a_reprovision_failing_after_the_request_keeps_the_new_credentials(tmp_path: Path
                                                                         ) -> None:
    _provisioned(tmp_path)
    client = ScriptedClient(*[transient("read timed out") for _ in range(20)])
    ctx, _ = make_context(tmp_path, client, PEP_SERVER_DEADLINE="5")

    def injected_then_down() -> None:
        _inject(ctx)
        # No record for the check reprovision makes first; once FCC is injected, the
        # server cannot be reached for its record either.
        client.records["SN-1"] = transient()

    client.on_identity = injected_then_down
    with pytest.raises(PepError) as raised:
        reprovision(ctx)
    assert raised.value.code == Exit.SERVER_UNREACHABLE
    # What the gateway holds, and what the next run does, said exactly.
    hint = raised.value.hint
    assert "the credentials stay staged" in hint and "edge-core stays held" in hint
    assert "the previous identity stays aside (mcc_config.pep-previous" in hint, hint
    assert "asks GET /v3/enrollment-id again" in hint
    assert ctx.journal.data["injection"]["serialNumber"] == "SN-1"
    assert install.credentials_ready(ctx.paths, ctx.profile, False)
    assert not ctx.paths.provisioned_marker.exists(), "the previous identity stays aside"
    assert ctx.journal.record.restored_previous is None


def test_reprovision_refuses_when_the_server_holds_a_record(tmp_path: Path) -> None:
    _provisioned(tmp_path)
    journal = (tmp_path / "userdata/pep-agent/state.json").read_bytes()
    ctx, _ = make_context(tmp_path, ScriptedClient(records={"SN-1": "A-00"}))
    with pytest.raises(PepError) as raised:
        reprovision(ctx)
    assert raised.value.code == Exit.ALREADY_PROVISIONED
    assert "nothing was changed" in raised.value.message
    assert ctx.paths.journal.read_bytes() == journal
    assert ctx.paths.provisioned_marker.exists()


@pytest.mark.parametrize("client_ran", [False, True], ids=["fresh", "edge-core-ran"])
def test_a_lost_state_with_the_servers_identity_installed_is_adopted(tmp_path: Path,
                                                                     client_ran: bool) -> None:
    """Also once edge-core's client has stored items of its own (in WORKING alone): they are
    part of a working identity, which stays exactly as it is."""
    ctx = _provisioned(tmp_path)
    working = install.targets(ctx.paths, ctx.profile)[0] / "WORKING"
    if client_ran:
        typed = "Cert_mbed.LwM2MServerCACert"
        (working / esfs.file_name(typed)).write_bytes(
            esfs_codec.encode(typed, b"from the client", NONCE, mode=esfs.MODE_ENCRYPTED))
    before = {p.relative_to(working.parent): p.read_bytes()
              for p in working.parent.rglob("*") if p.is_file()}
    ctx.paths.provisioned_marker.unlink()
    ctx.paths.journal.unlink()
    again, _ = make_context(tmp_path, ScriptedClient(records={"SN-1": "A-00"}))
    assert runner.observe(again).installed is not None
    assert provision(again) == "already-provisioned"
    assert again.paths.provisioned_marker.read_text() == "SN-1\n"
    assert again.journal.data["adopted"] is True
    assert {p.relative_to(working.parent): p.read_bytes()
            for p in working.parent.rglob("*") if p.is_file()} == before


def test_an_adopted_identity_leaves_nothing_aside(tmp_path: Path) -> None:
    """Adoption ends a run as a success: what an interrupted reprovision set aside goes."""
    ctx = _provisioned(tmp_path)
    ctx.paths.journal.unlink()
    ctx.paths.provisioned_marker.rename(aside(ctx.paths.provisioned_marker))
    again, _ = make_context(tmp_path, ScriptedClient(records={"SN-1": "A-00"}))
    assert provision(again) == "already-provisioned"
    assert again.journal.data["adopted"] is True
    assert not list(tmp_path.rglob("*.pep-previous"))


def test_a_bug_in_reprovisions_checks_is_recorded_too(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    from pep_agent import reprovision as module

    _provisioned(tmp_path)
    ctx, _ = make_context(tmp_path, ScriptedClient())

    def broken(*_: object) -> None:
        raise RuntimeError("a bug in a check")

    monkeypatch.setattr(module, "STEPS", tuple(
        dataclasses.replace(step, check=broken) if step.name == "wait-network" else step
        for step in STEPS))
    with caplog.at_level(logging.ERROR), pytest.raises(PepError) as raised:
        reprovision(ctx)
    assert raised.value.code == Exit.INTERNAL
    assert json.loads(ctx.paths.journal.read_text())["error"]["code"] == int(Exit.INTERNAL)
    assert isinstance(ctx.led, FakeLed) and ctx.led.shown[-1].startswith("failed")
    assert any(r.exc_info for r in caplog.records if r.levelno == logging.ERROR)
    # Nothing had moved yet: the gateway keeps its identity.
    assert ctx.paths.provisioned_marker.read_text() == "SN-1\n"


@pytest.mark.parametrize("failure", ["503", "read timed out", "cut answer"])
def test_a_reprovision_whose_request_keeps_failing_restores_the_previous_identity(
        tmp_path: Path, failure: str) -> None:
    """Every request may have left (so an injection may have happened): the server's record is
    read, and with none the previous identity goes back instead of staying aside."""
    old = _provisioned(tmp_path)
    identity = old.paths.under(old.profile.identity_json)
    before = identity.read_bytes()
    err = ServerError(failure) if failure == "503" else transient(failure)
    err.transient = True
    client = ScriptedClient(*[err for _ in range(40)])
    ctx, _ = make_context(tmp_path, client, PEP_SERVER_DEADLINE="20")
    with pytest.raises(PepError) as raised:
        reprovision(ctx)
    assert client.lookups[-1] == "SN-1", "the server's record was asked for"
    assert "the previous identity was restored" in raised.value.hint
    assert identity.read_bytes() == before
    assert ctx.paths.provisioned_marker.read_text() == "SN-1\n"
    assert ctx.journal.record.restored_previous is True
    assert not list(tmp_path.rglob("*.pep-previous"))
