"""Logging set-up: stderr format, journal selection, structured fields."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from pep_agent.system.logs import journal_handler, redact, setup_logging


@pytest.fixture(autouse=True)
def restore_root_logger(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    monkeypatch.delenv("INVOCATION_ID", raising=False)
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for h in list(root.handlers):
        root.removeHandler(h)
    for h in handlers:
        root.addHandler(h)
    root.setLevel(level)


def test_stderr_lines(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging()
    log = logging.getLogger("pep_agent.test")
    log.info("waiting for %s", "eth0")
    log.debug("hidden")
    log.warning("LED missing")
    assert capsys.readouterr().err == (
        "pep-agent: waiting for eth0\npep-agent: warning: LED missing\n")


def test_debug_level(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging(debug=True, journal=False)
    logging.getLogger("pep_agent.test").debug("details")
    assert capsys.readouterr().err == "pep-agent: details\n"


def test_setup_is_idempotent(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging()
    setup_logging()
    logging.getLogger("pep_agent.test").info("once")
    assert capsys.readouterr().err == "pep-agent: once\n"


def test_auto_picks_journal_under_systemd(monkeypatch: pytest.MonkeyPatch) -> None:
    journal = pytest.importorskip("systemd.journal")
    monkeypatch.setenv("INVOCATION_ID", "0123456789abcdef0123456789abcdef")
    setup_logging()
    (handler,) = logging.getLogger().handlers
    assert isinstance(handler, journal.JournalHandler)


def test_journal_false_overrides_systemd(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("systemd.journal")
    monkeypatch.setenv("JOURNAL_STREAM", "8:12345")
    setup_logging(journal=False)
    (handler,) = logging.getLogger().handlers
    assert isinstance(handler, logging.StreamHandler)


def test_missing_systemd_python_falls_back_to_stderr(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "systemd.journal", None)  # makes the import fail
    setup_logging(journal=True)
    logging.getLogger("pep_agent.test").info("still visible")
    err = capsys.readouterr().err
    assert "pep-agent: warning: systemd-python is not installed" in err
    assert "pep-agent: still visible\n" in err


def test_structured_fields_reach_the_journal_sender() -> None:
    pytest.importorskip("systemd.journal")
    sent: list[dict[str, Any]] = []

    def sender(message: str, /, **fields: Any) -> None:
        sent.append({"MESSAGE": message, **fields})

    log = logging.getLogger("pep_agent.test.journal")
    log.propagate = False
    log.setLevel(logging.INFO)
    handler = journal_handler(sender=sender)
    log.addHandler(handler)
    try:
        log.info("step %s done", "fcc", extra={
            "PEP_STEP": "fcc", "PEP_SERIAL": "SN-1", "PEP_ATTEMPT": 2, "PEP_EXIT_CODE": None})
    finally:
        log.removeHandler(handler)
    (fields,) = sent
    assert fields["MESSAGE"] == "step fcc done"
    assert fields["SYSLOG_IDENTIFIER"] == "pep-agent"
    assert fields["PRIORITY"] == "6"
    assert (fields["PEP_STEP"], fields["PEP_SERIAL"], fields["PEP_ATTEMPT"]) == ("fcc", "SN-1", 2)
    assert "PEP_EXIT_CODE" not in fields


# --- redaction on every handler ---------------------------------------------------------------

FSS_KEY = "4f3a2b-9c8d7e-1a2b3c-4d5e6f/1b9d5c-35a4e900"
PEM_BODY = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7"
PEM = f"-----BEGIN PRIVATE KEY-----\n{PEM_BODY}\n-----END PRIVATE KEY-----"
ENROLLMENT = "A-35:E7:72:8A:07:50:3B:3A:B2:D1:67:87:4E:0C:D8:4F:8C:77:E3:0A:DD:F1"
IDENTITY = json.dumps({"serialNumber": "SN-SECRET-DOC", "enrollmentID": ENROLLMENT,
                       "gatewayServicesAddress": "https://gw.example", "deployed": True,
                       "ssl": {"key": PEM}})
SECRETS = (FSS_KEY, PEM_BODY, ENROLLMENT, "SN-SECRET-DOC", "vk-sent-secret-123")


def _log_everything(log: logging.Logger) -> None:
    log.info("answer %s", IDENTITY)
    log.warning("key %s and query ?verificationKey=vk-sent-secret-123&ip=1", FSS_KEY)
    try:
        # A bug whose exception text carries a secret, as a KeyError of a parsed document does.
        raise KeyError({"enrollmentID": ENROLLMENT, "pem": PEM})
    except KeyError:
        log.error("internal error", exc_info=True)


def _assert_redacted(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, (secret, text)
    assert "[redacted]" in text


def test_stderr_handler_redacts_lines_and_tracebacks(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging(journal=False)
    _log_everything(logging.getLogger("anything.at.all"))  # not only pep_agent or urllib3
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "KeyError" in err
    assert "ip=1" in err  # what is not secret stays readable
    _assert_redacted(err)


def test_journal_handler_redacts_lines_and_tracebacks() -> None:
    pytest.importorskip("systemd.journal")
    sent: list[dict[str, Any]] = []

    def sender(message: str, /, **fields: Any) -> None:
        sent.append({"MESSAGE": message, **fields})

    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(journal_handler(sender=sender))
    root.setLevel(logging.INFO)
    _log_everything(logging.getLogger("urllib3.connectionpool"))
    assert len(sent) == 3
    error = sent[-1]
    assert "KeyError" in error["EXCEPTION_TEXT"] and "EXCEPTION_INFO" not in error
    _assert_redacted(repr(sent))


def test_redact_keeps_ordinary_text() -> None:
    line = "provisioned serial GW-7 at 10.0.0.5:7777: {'state': 'done', 'attempt': 2}"
    assert redact(line) == line
    cut = '{"enrollmentID": "A-35:E7", "serialNumber": "SN-1", "ssl": {"ke'
    assert redact(f"body: {cut}") == "body: {[redacted] identity document}"


def test_a_broken_log_call_does_not_leak_its_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging(journal=False)
    logging.getLogger("pep_agent.test").info("two %s %s", FSS_KEY)  # one argument missing
    err = capsys.readouterr().err
    assert FSS_KEY not in err and "not shown" in err
