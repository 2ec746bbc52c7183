"""The identity request's retry schedule, on a fake clock with a scripted client."""

from __future__ import annotations

from pathlib import Path

import pytest

from pep_agent.errors import (
    AlreadyProvisionedError,
    BadResponseError,
    PepError,
    ServerError,
    ServerUnreachableError,
)
from pep_agent.flow import ending, runner
from pep_agent.flow.runner import request_identity
from pep_agent.journal import Journal
from tests.fakes import GOOD, ScriptedClient, make_context, transient, unsent


def test_transient_failures_back_off_with_full_jitter(tmp_path: Path) -> None:
    client = ScriptedClient(transient(), transient(), transient(), transient(), GOOD)
    ctx, clock = make_context(tmp_path, client)
    request_identity(ctx)
    # Each wait is drawn from [0, min(cap, base * 2^(n-1))]: 1, 2, 4, 8.
    assert clock.draws == [(0, 1), (0, 2), (0, 4), (0, 8)]
    assert clock.sleeps == [0.5, 1, 2, 4]
    assert len(client.queries) == 5
    assert ctx.journal.data["attempt"] == 5 and ctx.journal.data["enrollment_id"] == "A-00"
    assert (tmp_path / "userdata/pep-agent/response.json").exists()


def test_gives_up_at_the_deadline(tmp_path: Path) -> None:
    client = ScriptedClient(*[transient() for _ in range(50)])
    ctx, clock = make_context(tmp_path, client, PEP_SERVER_DEADLINE="10")
    with pytest.raises(ServerUnreachableError):
        request_identity(ctx)
    assert clock.t <= 10
    assert not (tmp_path / "userdata/pep-agent/response.json").exists()


@pytest.mark.parametrize("err", [
    AlreadyProvisionedError("409"), ServerError("400 bad request"), BadResponseError("html")])
def test_permanent_failures_are_not_retried(tmp_path: Path, err: PepError) -> None:
    # For the 409, the record it stands for cannot be read.
    down = {"SN-1": ServerError("503")} if isinstance(err, AlreadyProvisionedError) else None
    client = ScriptedClient(err, GOOD, records=down)
    ctx, clock = make_context(tmp_path, client)
    with pytest.raises(type(err)) as raised:
        request_identity(ctx)
    assert len(client.queries) == 1 and clock.sleeps == []
    if isinstance(err, AlreadyProvisionedError):
        # The record the 409 stands for is looked up: here the server cannot say.
        assert client.lookups == ["SN-1"]
        assert raised.value.message == "serial SN-1 is already provisioned on the server"
        # The record was not read: the hint says how to look at it, not to remove it.
        assert raised.value.hint.startswith(
            "look at its record: `pep-agent get-enrollment-id -s SN-1` prints an enrollment id")
        assert "only once no gateway with serial SN-1 is being provisioned" in raised.value.hint


def test_409_with_a_404_record_is_an_unfinished_record(tmp_path: Path) -> None:
    """A server restarted during an injection keeps `deployed: false`; so does a record being
    injected now for another gateway with this serial. The record is watched for as long as an
    injection can take, and the hint says how to make sure before deleting anything."""
    client = ScriptedClient(AlreadyProvisionedError("409"))
    ctx, clock = make_context(tmp_path, client, PEP_HTTP_TIMEOUT="60")
    with pytest.raises(AlreadyProvisionedError) as raised:
        request_identity(ctx)
    assert len(client.lookups) > 1 and clock.t >= 60
    assert "unfinished record for serial SN-1" in raised.value.message
    assert "server restarted during an injection" in raised.value.message
    assert "no gateway holds" not in raised.value.hint
    assert "first make sure that no other gateway with serial SN-1" in raised.value.hint
    assert not ctx.journal.data.get("injection")


def test_409_with_a_deployed_record_names_the_duplicate(tmp_path: Path) -> None:
    """The loser of a same-serial race is not told to delete the winner."""
    client = ScriptedClient(AlreadyProvisionedError("409"), records={"SN-1": "A-WIN"})
    ctx, _ = make_context(tmp_path, client)
    with pytest.raises(AlreadyProvisionedError) as raised:
        request_identity(ctx)
    err = raised.value
    assert "deployed record for serial SN-1 (enrollment id A-WIN) from another gateway" \
        in err.message
    assert "a working gateway holds that identity" in err.message
    assert "serial SN-1 is a duplicate" in err.hint
    assert "take the identity from the gateway that holds it" in err.hint
    assert "remove its record there" not in err.hint


def test_a_request_that_never_left_journals_no_injection(tmp_path: Path) -> None:
    """Refused, DNS, TLS before sending: the rerun has nothing to recover."""
    client = ScriptedClient(*[unsent() for _ in range(50)])
    ctx, _ = make_context(tmp_path, client, PEP_SERVER_DEADLINE="10")
    with pytest.raises(ServerUnreachableError):
        request_identity(ctx)
    assert len(client.queries) > 1
    assert Journal(ctx.paths.journal).data.get("injection") is None
    # A request that did leave (then timed out) is still counted.
    # (And the server's record cannot be read: with a 404 the credentials would be discarded.)
    client = ScriptedClient(*[transient("read timed out") for _ in range(50)],
                            records={"SN-1": transient()})
    ctx, _ = make_context(tmp_path / "sent", client, PEP_SERVER_DEADLINE="10")
    with pytest.raises(ServerUnreachableError):
        request_identity(ctx)
    assert Journal(ctx.paths.journal).data.get("injection")


def test_an_answer_for_another_serial_is_not_saved(tmp_path: Path) -> None:
    client = ScriptedClient({"serialNumber": "OTHER", "enrollmentID": "A-9"})
    ctx, _ = make_context(tmp_path, client)
    with pytest.raises(BadResponseError):
        request_identity(ctx)
    assert not (tmp_path / "userdata/pep-agent/response.json").exists()


def test_a_gateway_with_the_marker_is_never_provisioned_again(tmp_path: Path) -> None:
    """Even when the run that wrote the marker failed afterwards (e.g. its reboot)."""
    ctx, _ = make_context(tmp_path, ScriptedClient())
    ctx.journal.reset(serial="SN-1")
    ctx.paths.provisioned_marker.write_text("SN-1\n")
    ending.end(ctx, ServerError("systemctl reboot failed"))
    assert ctx.journal.data["state"] == "provisioned"
    assert runner.plan(ctx).start is None
