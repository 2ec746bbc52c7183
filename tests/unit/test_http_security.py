"""URL checks, Retry-After, secret redaction, the retry wait, and writes that refuse symlinks."""

from __future__ import annotations

import email.utils
from pathlib import Path
from typing import Any

import pytest

from pep_agent.errors import BadResponseError, ConfigError, InstallError, ServerError
from pep_agent.exit_codes import Exit
from pep_agent.flow.request import retry_delay
from pep_agent.flow.runner import request_identity
from pep_agent.settings.config import load_settings
from pep_agent.settings.paths import Paths
from pep_agent.settings.urls import check_url
from pep_agent.system import http
from pep_agent.system.http_failures import retry_after
from pep_agent.system.leds import make_led
from pep_agent.system.services import SandboxServices
from tests.fakes import GOOD, ScriptedClient, make_context

GOOD_URLS = ["http://localhost:5151", "https://pep.factory.example/", "http://10.0.0.2",
             "http://[::1]:5151", "https://pep-1.line_3.example:8443/api/"]
BAD_URLS = {
    "http://[::1": "brackets", "http://exa mple.com": "space", "http://pep\t:1": "space",
    "ftp://pep": "scheme", "pep:5151": "scheme", "http://": "no host", "http:pep": "no host",
    "http://pep:0": "port", "http://pep:65536": "port", "http://pep:80a": "port",
    "http://pep:": "port", "http://u:secret@pep": "credentials", "http://pep/?a=b": "query",
    "http://pep/#x": "query", "http://-pep": "host", "http://pe..p": "host",
    "http://1.2.3.256": "IPv4", "http://[::g]": "IPv6", "http://pép": "non-ASCII", "": "empty",
}


@pytest.mark.parametrize("url", GOOD_URLS)
def test_good_urls_pass(url: str) -> None:
    assert check_url(url, name="server URL") == url.rstrip("/")


@pytest.mark.parametrize("url", sorted(BAD_URLS))
def test_bad_urls_are_config_errors(url: str) -> None:
    with pytest.raises(ConfigError) as raised:
        check_url(url, name="server URL")
    assert raised.value.code == Exit.CONFIG and BAD_URLS[url] in raised.value.message
    assert "\n" not in raised.value.message and "secret" not in raised.value.message


def test_settings_check_every_url(tmp_path: Path) -> None:
    for var in ("PEP_SERVER_URL", "PEP_API_ADDRESS", "PEP_GATEWAY_SERVICES_ADDRESS",
                "PEP_STATUS_URL"):
        with pytest.raises(ConfigError, match=var):
            load_settings({"root": tmp_path}, {var: "http://[::1"})


def test_retry_after_forms() -> None:
    now = 1_700_000_000.0
    assert retry_after("7") == 7.0
    assert retry_after(email.utils.formatdate(now + 30, usegmt=True), now=now) == 30.0
    assert retry_after(email.utils.formatdate(now - 30, usegmt=True), now=now) == 0.0
    for unusable in (None, "", "-1", "1.5", "soon", "Wed, 99 Foo 2026 00:00:00 GMT"):
        assert retry_after(unusable) is None
    assert retry_after("9" * 40) == 1e9  # absurd, but a number: the cap bounds it


def test_retry_delay_honours_retry_after_within_the_cap() -> None:
    def low(a: float, b: float) -> float:
        return a

    def high(a: float, b: float) -> float:
        return b

    assert retry_delay(1, 1.0, 30.0, None, high) == 1.0  # ordinary backoff
    assert retry_delay(1, 1.0, 30.0, 10.0, low) == 10.0  # never sooner than asked
    assert retry_delay(1, 1.0, 30.0, 10.0, high) == 11.0  # jitter of up to base
    assert retry_delay(1, 1.0, 30.0, 3600.0, high) == 30.0  # never past the cap


def test_redact_masks_every_form_of_a_sent_secret() -> None:
    from urllib.parse import quote, quote_plus

    from pep_agent.system.logs import redact, remember_secret

    secret = "0a1b2c-3d4e5f/1c2d-35a4e900"
    remember_secret(secret)
    text = (f"bad key {secret}; url ?verificationKey=x&a=1 "
            f"q={quote(secret, safe='')} plus {quote_plus(secret).upper()}")
    masked = redact(text)
    assert secret not in masked and "2F" not in masked.upper()
    assert masked.count("[redacted]") == 4 and "a=1" in masked


class BudgetClient(ScriptedClient):
    """Records the budget each request was given; each answer takes `slow` seconds."""

    def __init__(self, *answers: Any, clock: Any = None, slow: float = 0.0) -> None:
        super().__init__(*answers)
        self.budgets: list[float | None] = []
        self.clock, self.slow = clock, slow

    def identity(self, query: dict[str, str], **kw: Any) -> dict[str, Any]:
        self.budgets.append(kw.get("budget"))
        if self.clock is not None:
            self.clock.t += self.slow
        return super().identity(query)


def rate_limited(after: float) -> ServerError:
    err = ServerError("identity request: server error 429")
    err.transient, err.retry_after = True, after
    return err


def test_flow_waits_retry_after_and_each_attempt_gets_the_full_timeout(tmp_path: Path) -> None:
    client = BudgetClient(rate_limited(5.0), rate_limited(50.0), GOOD)
    ctx, clock = make_context(tmp_path, client, PEP_RETRY_CAP="20", PEP_SERVER_DEADLINE="60")
    draws: list[tuple[float, float]] = []

    def midpoint(low: float, high: float) -> float:
        draws.append((low, high))
        return (low + high) / 2

    clock.uniform = midpoint  # type: ignore[method-assign]
    request_identity(ctx)
    # Retry-After 5 → drawn from [5, 6]; 50 is capped at 20 (no room left for jitter).
    assert draws == [(5.0, 6.0), (20.0, 20.0)]
    assert clock.sleeps == [5.5, 20.0]
    # The deadline bounds when an attempt starts, not how long it may take: the HTTP
    # timeout applies whole (no shorter budget is passed).
    assert client.budgets == [None, None, None]


def test_a_slow_answer_past_the_deadline_still_counts(tmp_path: Path) -> None:
    """A 3 s server deadline must not cut short a request that answers after 10 s."""
    ctx, clock = make_context(tmp_path, BudgetClient(GOOD), PEP_SERVER_DEADLINE="3")
    client = BudgetClient(GOOD, clock=clock, slow=10.0)
    ctx.client_factory = lambda: client  # type: ignore[assignment,return-value]
    request_identity(ctx)
    assert clock.t == 10.0 and ctx.answer is not None
    assert ctx.journal.data["enrollment_id"] == "A-00"


def test_retry_after_past_the_deadline_ends_the_loop(tmp_path: Path) -> None:
    client = BudgetClient(rate_limited(30.0), GOOD)
    ctx, clock = make_context(tmp_path, client, PEP_RETRY_CAP="60", PEP_SERVER_DEADLINE="10")
    with pytest.raises(ServerError):
        request_identity(ctx)
    assert clock.sleeps == [] and len(client.budgets) == 1


def test_sandbox_services_log_refuses_a_symlink(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    log = Paths(tmp_path).sandbox_services
    log.parent.mkdir(parents=True)
    log.symlink_to(victim)
    with pytest.raises(InstallError, match="symbolic link"):
        SandboxServices(Paths(tmp_path)).act("mask", "edge-core.service")
    assert victim.read_text() == "precious\n"


def test_sandbox_services_log_is_appended(tmp_path: Path) -> None:
    log = Paths(tmp_path).sandbox_services
    services = SandboxServices(Paths(tmp_path))
    services.act("mask", "edge-core.service")
    services.reboot()
    assert [line.split(" ", 1)[1] for line in log.read_text().splitlines()] == [
        "mask edge-core.service", "reboot"]


def test_led_attribute_planted_as_a_symlink_is_not_written(tmp_path: Path) -> None:
    led = tmp_path / "leds" / "status"
    led.mkdir(parents=True)
    for attr in ("trigger", "delay_on", "delay_off"):
        (led / attr).write_text("")
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    (led / "brightness").symlink_to(victim)
    make_led("sysfs", leds_dir=tmp_path / "leds").show("off")
    assert victim.read_text() == "precious\n"


@pytest.mark.parametrize("href", ["http://127.0.0.2:5151/v3/enrollment-ids?last=x",
                                  "https://127.0.0.1:5151/v3/enrollment-ids",
                                  "//elsewhere.example/v3/enrollment-ids"])
def test_a_next_link_to_another_server_is_not_followed(href: str) -> None:
    client = http.PepClient("http://127.0.0.1:5151")
    with pytest.raises(BadResponseError, match="another server"):
        client.follow(href)


def test_atomic_write_replaces_a_planted_symlink_instead_of_writing_through(
        tmp_path: Path) -> None:
    from pep_agent.journal import Journal

    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    journal = tmp_path / "state" / "state.json"
    journal.parent.mkdir()
    journal.symlink_to(victim)
    Journal(journal).update(state="running")
    assert victim.read_text() == "precious\n"
    assert not journal.is_symlink() and (journal.stat().st_mode & 0o777) == 0o600


def test_one_constructor_warns_of_insecure_every_time(tmp_path: Path) -> None:
    told: list[str] = []
    client = http.PepClient.from_settings(
        load_settings({"root": tmp_path, "insecure": True}, {}), warn=told.append)
    assert client.session.verify is False and len(told) == 1 and "NOT verified" in told[0]
    client = http.PepClient.from_settings(load_settings({"root": tmp_path}, {}),
                                          warn=told.append)
    assert client.session.verify is not False and len(told) == 1
