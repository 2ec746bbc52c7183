"""The recovery rule's decisions (issue 9), on a fake clock with a scripted server: staged
credentials are deleted only when the server holds no record, and kept otherwise."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pep_agent import esfs, flow
from pep_agent.errors import BadResponseError, Exit, PepError, ServerError
from pep_agent.steps import install
from tests.unit.test_esfs import write_pal
from tests.unit.test_flow_retries import GOOD, ScriptedClient, _context, transient

SECRET_KEY = "fss-key-0123456789abcdef"


def _stage(ctx: flow.Context) -> Path:
    """Credentials as FCC stores them after an injection."""
    pal = install.staged_pal(ctx.paths, ctx.profile)
    write_pal(pal, {typed: f"{ctx.serial}-{typed}".encode() for typed in esfs.REQUIRED})
    return pal / "WORKING"


def test_a_200_for_another_serial_recovers_our_record(tmp_path: Path) -> None:
    """Case 3: the server injected FCC and holds a record, whatever its answer said."""
    client = ScriptedClient({"serialNumber": "OTHER", "enrollmentID": "A-9"},
                            records={"SN-1": "A-SN1"})
    ctx, _ = _context(tmp_path, client)
    _stage(ctx)
    flow.request_identity(ctx)
    assert client.lookups == ["SN-1"] and len(client.queries) == 1
    assert ctx.answer is not None and ctx.answer["serialNumber"] == "SN-1"
    assert ctx.answer["enrollmentID"] == "A-SN1"
    saved = json.loads(ctx.paths.saved_response.read_text())
    assert saved["enrollmentID"] == "A-SN1" and saved["deployed"] is True
    assert install.credentials_ready(ctx.paths, ctx.profile, False)


@pytest.mark.parametrize("answer", [{"serialNumber": "SN-1"}, {"serialNumber": "OTHER",
                                                               "enrollmentID": "A-9"}],
                         ids=["no-enrollment-id", "other-serial"])
def test_a_bad_200_without_our_record_is_discarded(tmp_path: Path, answer: dict[str, str]
                                                   ) -> None:
    client = ScriptedClient(answer)
    ctx, _ = _context(tmp_path, client)
    _stage(ctx)
    with pytest.raises(BadResponseError):
        flow.request_identity(ctx)
    assert client.lookups == ["SN-1"]
    assert not install.staging_dir(ctx.paths, ctx.profile).exists()
    assert ctx.journal.data["injection"] is None


def test_a_500_is_the_servers_verdict_even_when_fcc_stored_something(tmp_path: Path) -> None:
    """Case 6: the server deleted its record: discard, no record lookups, exit 16."""
    client = ScriptedClient(_injection_failed())
    ctx, _ = _context(tmp_path, client, PEP_INJECTION_RETRIES="0")
    _stage(ctx)
    with pytest.raises(ServerError) as raised:
        flow.request_identity(ctx)
    assert raised.value.code == Exit.SERVER_ERROR
    assert client.lookups == []
    assert not install.staging_dir(ctx.paths, ctx.profile).exists()
    assert ctx.journal.data["injection"] is None


def test_a_409_to_our_first_request_is_final(tmp_path: Path) -> None:
    from pep_agent.errors import AlreadyProvisionedError

    client = ScriptedClient(AlreadyProvisionedError("409"), records={"SN-1": "A-x"})
    ctx, _ = _context(tmp_path, client)
    with pytest.raises(AlreadyProvisionedError):
        flow.request_identity(ctx)
    # Looked up only to say what the record is: nothing is recovered from it.
    assert client.lookups == ["SN-1"]
    assert ctx.answer is None and not ctx.paths.saved_response.exists()
    assert ctx.journal.data["injection"] is None


def test_the_journal_holds_what_rebuilding_needs_and_no_secret(tmp_path: Path) -> None:
    client = ScriptedClient(transient(), GOOD)
    ctx, _ = _context(tmp_path, client)
    ctx.verification_key = SECRET_KEY
    flow.request_identity(ctx)
    assert client.queries[0]["verificationKey"] == SECRET_KEY
    text = ctx.journal.path.read_text()
    assert SECRET_KEY not in text
    fields = json.loads(text)["injection"]
    assert fields["serialNumber"] == "SN-1" and "verificationKey" not in fields
    assert set(fields) >= {"apiAddress", "gatewayServicesAddress", "hardwareVersion"}


def _pending(tmp_path: Path, client: ScriptedClient) -> flow.Context:
    """A rerun's context after a run that sent its request and ended without the answer."""
    first, _ = _context(tmp_path, ScriptedClient())
    first.journal.reset(serial="SN-1", parsec=False, interface="lo",
                        injection={"serialNumber": "SN-1", "apiAddress": "https://api",
                                   "gatewayServicesAddress": "https://gw",
                                   "hardwareVersion": "hw", "radioConfig": "00",
                                   "ledConfig": "01", "category": "production"})
    _stage(first)
    ctx, _ = _context(tmp_path, client)
    ctx.serial = ""
    return ctx


def test_rerun_with_a_record_installs_the_rebuilt_answer(tmp_path: Path) -> None:
    client = ScriptedClient(records={"SN-1": "A-rec"})
    ctx = _pending(tmp_path, client)
    assert flow.plan(ctx) == flow.STEP_NAMES.index("install")
    assert client.queries == [], "never a second identity request"
    assert ctx.answer == {"serialNumber": "SN-1", "apiAddress": "https://api",
                          "gatewayServicesAddress": "https://gw", "hardwareVersion": "hw",
                          "radioConfig": "00", "ledConfig": "01", "category": "production",
                          "cloudAddress": "https://gw", "deployed": True,
                          "enrollmentID": "A-rec", "createdAt": ctx.answer["createdAt"]}
    assert install.credentials_ready(ctx.paths, ctx.profile, False)


def test_rerun_without_a_record_starts_over(tmp_path: Path) -> None:
    client = ScriptedClient()
    ctx = _pending(tmp_path, client)
    assert flow.plan(ctx) == 0
    assert client.lookups == ["SN-1"]
    assert not install.staging_dir(ctx.paths, ctx.profile).exists()


def test_rerun_with_the_server_unreachable_keeps_everything(tmp_path: Path) -> None:
    client = ScriptedClient(records={"SN-1": transient()})
    ctx = _pending(tmp_path, client)
    with pytest.raises(PepError) as raised:
        flow.plan(ctx)
    # 14: a code systemd restarts (not in RestartPreventExitStatus), so the next run recovers.
    assert raised.value.code == Exit.SERVER_UNREACHABLE
    assert "stay staged" in raised.value.hint
    assert install.credentials_ready(ctx.paths, ctx.profile, False)
    assert ctx.journal.data["injection"]["serialNumber"] == "SN-1"
    unit = (Path(__file__).parents[2] / "systemd/pep-agent.service").read_text()
    prevent = next(line for line in unit.splitlines() if line.startswith("RestartPrevent"))
    assert str(int(Exit.SERVER_UNREACHABLE)) not in prevent.split("=", 1)[1].split()


def _injection_failed() -> ServerError:
    err = ServerError("identity request: server error 500")
    err.injection_failed = True
    return err
