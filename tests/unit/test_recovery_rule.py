"""The recovery rule's decisions, on a fake clock with a scripted server and a fake FCC:
staged credentials are deleted only when the server holds no record, and kept otherwise."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pep_agent.errors import AlreadyProvisionedError, BadResponseError, PepError, ServerError
from pep_agent.exit_codes import Exit
from pep_agent.flow import Context, runner
from pep_agent.flow.runner import request_identity
from pep_agent.gateway import install
from tests.fakes import (
    GOOD,
    FakeFcc,
    ScriptedClient,
    make_context,
    stage_credentials,
    transient,
)

SECRET_KEY = "fss-key-0123456789abcdef"
INJECTION = {"serialNumber": "SN-1", "apiAddress": "https://api",
             "gatewayServicesAddress": "https://gw", "hardwareVersion": "hw",
             "radioConfig": "00", "ledConfig": "01", "category": "production"}


def _plan(ctx: Context) -> str | None:
    return runner.plan(ctx).start


def test_a_200_for_another_serial_recovers_our_record(tmp_path: Path) -> None:
    """The server injected FCC and holds a record, whatever its answer said."""
    client = ScriptedClient({"serialNumber": "OTHER", "enrollmentID": "A-9"},
                            records={"SN-1": "A-SN1"})
    ctx, _ = make_context(tmp_path, client)
    stage_credentials(ctx)
    request_identity(ctx)
    assert client.lookups == ["SN-1"] and len(client.queries) == 1
    assert ctx.answer is not None and ctx.answer["serialNumber"] == "SN-1"
    assert ctx.answer["enrollmentID"] == "A-SN1"
    saved = json.loads(ctx.paths.saved_response.read_text())
    assert saved["enrollmentID"] == "A-SN1" and saved["deployed"] is True
    assert install.credentials_ready(ctx.paths, ctx.profile, False)


def test_a_200_without_enrollment_id_recovers_our_record(tmp_path: Path) -> None:
    client = ScriptedClient({"serialNumber": "SN-1"}, records={"SN-1": "A-SN1"})
    ctx, _ = make_context(tmp_path, client)
    stage_credentials(ctx)
    request_identity(ctx)
    assert ctx.answer is not None and ctx.answer["enrollmentID"] == "A-SN1"
    assert ctx.journal.data["rebuilt_answer"] is True


@pytest.mark.parametrize("answer", [{"serialNumber": "SN-1"}, {"serialNumber": "OTHER",
                                                               "enrollmentID": "A-9"}],
                         ids=["no-enrollment-id", "other-serial"])
def test_a_bad_200_without_our_record_is_discarded(tmp_path: Path, answer: dict[str, str]
                                                   ) -> None:
    client = ScriptedClient(answer)
    ctx, _ = make_context(tmp_path, client)
    stage_credentials(ctx)
    with pytest.raises(BadResponseError):
        request_identity(ctx)
    assert client.lookups == ["SN-1"]
    assert not install.staging_dir(ctx.paths, ctx.profile).exists()
    assert ctx.journal.data["injection"] is None


def test_a_500_is_the_servers_verdict_even_when_fcc_stored_something(tmp_path: Path) -> None:
    """The server deleted its record: discard, no record lookups, exit 16."""
    client = ScriptedClient(_injection_failed())
    ctx, _ = make_context(tmp_path, client, PEP_INJECTION_RETRIES="0")
    stage_credentials(ctx)
    with pytest.raises(ServerError) as raised:
        request_identity(ctx)
    assert raised.value.code == Exit.SERVER_ERROR
    assert client.lookups == []
    assert not install.staging_dir(ctx.paths, ctx.profile).exists()
    assert ctx.journal.data["injection"] is None


def test_a_500_restarts_fcc_and_asks_again(tmp_path: Path) -> None:
    client = ScriptedClient(_injection_failed(), GOOD)
    ctx, _ = make_context(tmp_path, client, PEP_INJECTION_RETRIES="1")
    first = FakeFcc(("127.0.0.1", 4000))
    ctx.fcc = first
    request_identity(ctx)
    assert first.stopped and len(client.queries) == 2
    assert ctx.answer == GOOD and ctx.launch_fcc.starts  # type: ignore[attr-defined]


def test_a_409_to_our_first_request_is_final(tmp_path: Path) -> None:
    client = ScriptedClient(AlreadyProvisionedError("409"), records={"SN-1": "A-x"})
    ctx, _ = make_context(tmp_path, client)
    with pytest.raises(AlreadyProvisionedError):
        request_identity(ctx)
    # Looked up only to say what the record is: nothing is recovered from it.
    assert client.lookups == ["SN-1"]
    assert ctx.answer is None and not ctx.paths.saved_response.exists()
    assert ctx.journal.data["injection"] is None


def test_a_409_after_an_earlier_request_recovers(tmp_path: Path) -> None:
    """The first request timed out after the server injected FCC; the retry gets 409."""
    client = ScriptedClient(transient("read timed out"), AlreadyProvisionedError("409"),
                            records={"SN-1": "A-first"})
    ctx, _ = make_context(tmp_path, client)
    stage_credentials(ctx)
    request_identity(ctx)
    assert ctx.answer is not None and ctx.answer["enrollmentID"] == "A-first"
    assert len(client.queries) == 2
    assert install.credentials_ready(ctx.paths, ctx.profile, False)


def test_a_409_after_an_earlier_request_with_a_404_record_is_unfinished(tmp_path: Path) -> None:
    client = ScriptedClient(transient("read timed out"), AlreadyProvisionedError("409"))
    ctx, _ = make_context(tmp_path, client)
    stage_credentials(ctx)
    with pytest.raises(AlreadyProvisionedError, match="unfinished record for serial SN-1"):
        request_identity(ctx)
    # The server holds no record: what FCC stored is worth nothing.
    assert not install.staging_dir(ctx.paths, ctx.profile).exists()


def test_a_lost_answer_after_fcc_ended_is_recovered(tmp_path: Path) -> None:
    """FCC exited (so it was injected) but the answer never came: no second request."""
    client = ScriptedClient(transient("read timed out"), GOOD, records={"SN-1": "A-lost"})
    ctx, clock = make_context(tmp_path, client)
    ctx.fcc = FakeFcc(("127.0.0.1", 4000))
    ctx.fcc.child.returncode = 0
    stage_credentials(ctx)
    request_identity(ctx)
    assert len(client.queries) == 1 and clock.sleeps == []
    assert ctx.answer is not None and ctx.answer["enrollmentID"] == "A-lost"


def test_the_journal_holds_what_rebuilding_needs_and_no_secret(tmp_path: Path) -> None:
    client = ScriptedClient(transient(), GOOD)
    ctx, _ = make_context(tmp_path, client)
    ctx.verification_key = SECRET_KEY
    request_identity(ctx)
    assert client.queries[0]["verificationKey"] == SECRET_KEY
    text = ctx.journal.path.read_text()
    assert SECRET_KEY not in text
    fields = json.loads(text)["injection"]
    assert fields["serialNumber"] == "SN-1" and "verificationKey" not in fields
    assert set(fields) >= {"apiAddress", "gatewayServicesAddress", "hardwareVersion"}


def _pending(tmp_path: Path, client: ScriptedClient) -> Context:
    """A rerun's context after a run that sent its request and ended without the answer."""
    first, _ = make_context(tmp_path, ScriptedClient())
    first.journal.reset(serial="SN-1", parsec=False, interface="lo", injection=INJECTION)
    stage_credentials(first)
    ctx, _ = make_context(tmp_path, client)
    ctx.serial = ""
    return ctx


def test_rerun_with_a_record_installs_the_rebuilt_answer(tmp_path: Path) -> None:
    client = ScriptedClient(records={"SN-1": "A-rec"})
    ctx = _pending(tmp_path, client)
    assert runner.observe(ctx).hold_edge_core
    assert runner.plan(ctx).start == "install"
    assert client.queries == [], "never a second identity request"
    assert ctx.answer == {**INJECTION, "cloudAddress": "https://gw", "deployed": True,
                          "enrollmentID": "A-rec", "createdAt": ctx.answer["createdAt"]}
    assert install.credentials_ready(ctx.paths, ctx.profile, False)
    assert ctx.journal.data["resumed"] is True and ctx.serial == "SN-1"


def test_rerun_without_a_record_starts_over(tmp_path: Path) -> None:
    client = ScriptedClient()
    ctx = _pending(tmp_path, client)
    assert _plan(ctx) == "preflight"
    assert client.lookups == ["SN-1"]
    assert not install.staging_dir(ctx.paths, ctx.profile).exists()


def test_rerun_with_the_server_unreachable_keeps_everything(tmp_path: Path) -> None:
    client = ScriptedClient(records={"SN-1": transient()})
    ctx = _pending(tmp_path, client)
    with pytest.raises(PepError) as raised:
        _plan(ctx)
    # 14: a code systemd restarts (not in RestartPreventExitStatus), so the next run recovers.
    assert raised.value.code == Exit.SERVER_UNREACHABLE
    assert "stay staged" in raised.value.hint and "asks GET /v3/enrollment-id" in raised.value.hint
    assert install.credentials_ready(ctx.paths, ctx.profile, False)
    assert ctx.journal.data["injection"]["serialNumber"] == "SN-1"
    unit = (Path(__file__).parents[2] / "systemd/pep-agent.service").read_text()
    prevent = next(line for line in unit.splitlines() if line.startswith("RestartPrevent"))
    assert str(int(Exit.SERVER_UNREACHABLE)) not in prevent.split("=", 1)[1].split()


def test_the_record_lookup_retries_with_the_same_backoff(tmp_path: Path) -> None:
    """One retry helper: the lookup backs off like the identity request, under the deadline."""
    ctx, clock = make_context(tmp_path, ScriptedClient(), PEP_SERVER_DEADLINE="10")
    flaky = ScriptedClient(records={"SN-1": ServerError("503")})
    from pep_agent.flow import request

    ctx.client_factory = lambda: flaky  # type: ignore[assignment,return-value]
    held = request.look_up(ctx, "SN-1", patient=True)
    assert held.unreachable and held.enrollment is None and not held.foreign
    assert clock.draws[:3] == [(0, 1), (0, 2), (0, 4)] and clock.t <= 10
    assert len(flaky.lookups) == len(clock.sleeps) + 1


def test_a_saved_answer_without_credentials_is_a_resume_error(tmp_path: Path) -> None:
    ctx, _ = make_context(tmp_path, ScriptedClient())
    ctx.paths.state_dir.mkdir(parents=True)
    ctx.paths.saved_response.write_text(json.dumps(GOOD))
    assert runner.observe(ctx).answered
    with pytest.raises(PepError) as raised:
        runner.plan(ctx)
    assert raised.value.code == Exit.RESUME
    assert ctx.paths.saved_response.exists(), "the answer is kept"


def _injection_failed() -> ServerError:
    err = ServerError("identity request: server error 500")
    err.injection_failed = True
    return err
