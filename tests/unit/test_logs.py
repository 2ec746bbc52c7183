"""Logging set-up: stderr format, journal selection, structured fields."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from pep_agent.system.logs import journal_handler, setup_logging


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
