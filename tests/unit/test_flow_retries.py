"""The identity request's retry schedule, on a fake clock with a scripted client."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pep_agent import flow
from pep_agent.config import load_settings
from pep_agent.errors import (
    AlreadyProvisionedError,
    BadResponseError,
    NotFoundError,
    PepError,
    ServerError,
    ServerUnreachableError,
)
from pep_agent.state import Journal
from pep_agent.system.leds import make_led
from pep_agent.system.notify import Notifier


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0
        self.sleeps: list[float] = []
        self.draws: list[tuple[float, float]] = []

    def monotonic(self) -> float:
        return self.t

    def now(self) -> float:
        return 1_700_000_000.0 + self.t

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += seconds

    def uniform(self, low: float, high: float) -> float:
        self.draws.append((low, high))
        return high * 0.5


class ScriptedClient:
    def __init__(self, *answers: Any, records: dict[str, Any] | None = None) -> None:
        self.answers = list(answers)
        self.queries: list[dict[str, str]] = []
        # GET /v3/enrollment-id: serial -> enrollment id (or an error to raise); else 404.
        self.records = records or {}
        self.lookups: list[str] = []

    def enrollment_id(self, serial: str) -> str:
        self.lookups.append(serial)
        found = self.records.get(serial)
        if found is None:
            raise NotFoundError(f"enrollment id of {serial!r}: not found on the server")
        if isinstance(found, PepError):
            raise found
        return str(found)

    def identity(self, query: dict[str, str], **_: Any) -> dict[str, Any]:
        self.queries.append(query)
        answer = self.answers.pop(0)
        if isinstance(answer, PepError):
            raise answer
        return dict(answer)


def transient(message: str = "connection refused") -> PepError:
    err = ServerUnreachableError(message)
    err.transient = True
    return err


def _context(tmp_path: Path, client: ScriptedClient, **env: str) -> tuple[flow.Context, FakeClock]:
    settings = load_settings({"root": tmp_path}, {"PEP_RETRY_BASE": "1", "PEP_RETRY_CAP": "8",
                                                  "PEP_SERVER_DEADLINE": "60", **env})
    clock = FakeClock()
    ctx = flow.Context(settings=settings, services=None, clock=clock,  # type: ignore[arg-type]
                       led=make_led("none", leds_dir=tmp_path), notifier=Notifier(""),
                       journal=Journal(settings.paths.journal),
                       client_factory=lambda: client)  # type: ignore[arg-type,return-value]
    ctx.serial, ctx.fcc_address = "SN-1", ("127.0.0.1", 4000)
    return ctx, clock


GOOD = {"serialNumber": "SN-1", "enrollmentID": "A-00"}


def test_transient_failures_back_off_with_full_jitter(tmp_path: Path) -> None:
    client = ScriptedClient(transient(), transient(), transient(), transient(), GOOD)
    ctx, clock = _context(tmp_path, client)
    flow.request_identity(ctx)
    # Each wait is drawn from [0, min(cap, base * 2^(n-1))]: 1, 2, 4, 8.
    assert clock.draws == [(0, 1), (0, 2), (0, 4), (0, 8)]
    assert clock.sleeps == [0.5, 1, 2, 4]
    assert len(client.queries) == 5
    assert ctx.journal.data["attempt"] == 5 and ctx.journal.data["enrollment_id"] == "A-00"
    assert (tmp_path / "userdata/pep-agent/response.json").exists()


def test_gives_up_at_the_deadline(tmp_path: Path) -> None:
    client = ScriptedClient(*[transient() for _ in range(50)])
    ctx, clock = _context(tmp_path, client, PEP_SERVER_DEADLINE="10")
    with pytest.raises(ServerUnreachableError):
        flow.request_identity(ctx)
    assert clock.t <= 10
    assert not (tmp_path / "userdata/pep-agent/response.json").exists()


@pytest.mark.parametrize("err", [
    AlreadyProvisionedError("409"), ServerError("400 bad request"), BadResponseError("html")])
def test_permanent_failures_are_not_retried(tmp_path: Path, err: PepError) -> None:
    # For the 409, the record it stands for cannot be read.
    down = {"SN-1": ServerError("503")} if isinstance(err, AlreadyProvisionedError) else None
    client = ScriptedClient(err, GOOD, records=down)
    ctx, clock = _context(tmp_path, client)
    with pytest.raises(type(err)) as raised:
        flow.request_identity(ctx)
    assert len(client.queries) == 1 and clock.sleeps == []
    if isinstance(err, AlreadyProvisionedError):
        # The record the 409 stands for is looked up: here the server cannot say.
        assert client.lookups == ["SN-1"]
        assert raised.value.message == "serial SN-1 is already provisioned on the server"


def test_409_with_a_404_record_is_an_unfinished_record(tmp_path: Path) -> None:
    """Issue 14, case 5: a server restarted during an injection keeps `deployed: false`."""
    client = ScriptedClient(AlreadyProvisionedError("409"))
    ctx, _ = _context(tmp_path, client)
    with pytest.raises(AlreadyProvisionedError) as raised:
        flow.request_identity(ctx)
    assert client.lookups == ["SN-1"]
    assert "unfinished record for serial SN-1" in raised.value.message
    assert "server restarted during an injection" in raised.value.message
    assert "no gateway holds it" in raised.value.hint
    assert not ctx.journal.data.get("injection")


def test_409_with_a_deployed_record_names_the_duplicate(tmp_path: Path) -> None:
    """Issue 14, case 6: the loser of a same-serial race is not told to delete the winner."""
    client = ScriptedClient(AlreadyProvisionedError("409"), records={"SN-1": "A-WIN"})
    ctx, _ = _context(tmp_path, client)
    with pytest.raises(AlreadyProvisionedError) as raised:
        flow.request_identity(ctx)
    err = raised.value
    assert "deployed record for serial SN-1 (enrollment id A-WIN) from another gateway" \
        in err.message
    assert "a working gateway holds that identity" in err.message
    assert "serial SN-1 is a duplicate" in err.hint
    assert "take the identity from the gateway that holds it" in err.hint
    assert "remove its record there" not in err.hint


def unsent(message: str = "connection refused") -> PepError:
    err = transient(message)
    err.sent = False
    return err


def test_a_request_that_never_left_journals_no_injection(tmp_path: Path) -> None:
    """Issue 14, case 7: refused, DNS, TLS before sending: the rerun has nothing to recover."""
    client = ScriptedClient(*[unsent() for _ in range(50)])
    ctx, _ = _context(tmp_path, client, PEP_SERVER_DEADLINE="10")
    with pytest.raises(ServerUnreachableError):
        flow.request_identity(ctx)
    assert len(client.queries) > 1
    assert Journal(ctx.paths.journal).data.get("injection") is None
    # A request that did leave (then timed out) is still counted.
    client = ScriptedClient(*[transient("read timed out") for _ in range(50)])
    ctx, _ = _context(tmp_path / "sent", client, PEP_SERVER_DEADLINE="10")
    with pytest.raises(ServerUnreachableError):
        flow.request_identity(ctx)
    assert Journal(ctx.paths.journal).data.get("injection")


def test_an_answer_for_another_serial_is_not_saved(tmp_path: Path) -> None:
    client = ScriptedClient({"serialNumber": "OTHER", "enrollmentID": "A-9"})
    ctx, _ = _context(tmp_path, client)
    with pytest.raises(BadResponseError):
        flow.request_identity(ctx)
    assert not (tmp_path / "userdata/pep-agent/response.json").exists()


def test_a_gateway_with_the_marker_is_never_provisioned_again(tmp_path: Path) -> None:
    """Even when the run that wrote the marker failed afterwards (e.g. its reboot)."""
    ctx, _ = _context(tmp_path, ScriptedClient())
    ctx.journal.reset(serial="SN-1")
    ctx.paths.provisioned_marker.write_text("SN-1\n")
    flow._fail(ctx, ServerError("systemctl reboot failed"))
    assert ctx.journal.data["state"] == "provisioned"
    assert flow.plan(ctx) is None
