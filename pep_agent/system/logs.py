"""Logging set-up: journald with structured fields under systemd, plain stderr lines otherwise.

Side effect: replaces the handlers of the root logger and sets its level. systemd.journal is
imported only when the journal is actually used.

Callers attach structured fields with `extra`, e.g.
`log.info("server answered", extra={"PEP_STEP": "request", "PEP_ATTEMPT": 2})`.
systemd-python's JournalHandler (234/235) sends every attribute of the log record as a
journal field, so upper-case `extra` keys arrive as fields of the same name; the lower-case
attributes of LogRecord are not valid field names and journald drops them.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from typing import Any

IDENTIFIER = "pep-agent"
FIELD_PREFIX = "PEP_"


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to the current sys.stderr, which may be swapped after set-up (tests, CLI)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    def emit(self, record: logging.LogRecord) -> None:
        self.setStream(sys.stderr)
        super().emit(record)


class _StderrFormatter(logging.Formatter):
    """`pep-agent: message`, with the level named for warnings and errors."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        if record.levelno >= logging.WARNING:
            return f"{IDENTIFIER}: {record.levelname.lower()}: {text}"
        return f"{IDENTIFIER}: {text}"


class _DropEmptyFields(logging.Filter):
    """Removes PEP_* fields whose value is None, which would reach the journal as 'None'."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key in [k for k, v in vars(record).items() if k.startswith(FIELD_PREFIX) and v is None]:
            delattr(record, key)
        return True


def under_systemd() -> bool:
    """True when systemd started this process (its output already goes to the journal)."""
    return bool(os.environ.get("JOURNAL_STREAM") or os.environ.get("INVOCATION_ID"))


def journal_handler(sender: Callable[..., Any] | None = None) -> logging.Handler:
    """A JournalHandler tagged pep-agent; `sender` replaces journal.send (tests only).

    Raises ImportError when systemd-python is not installed.
    """
    import systemd.journal as journal

    kwargs: dict[str, Any] = {"SYSLOG_IDENTIFIER": IDENTIFIER}
    if sender is not None:
        kwargs["sender_function"] = sender
    handler: logging.Handler = journal.JournalHandler(**kwargs)
    handler.addFilter(_DropEmptyFields())
    handler.setFormatter(logging.Formatter("%(message)s"))
    return handler


def setup_logging(*, debug: bool = False, journal: bool | None = None) -> None:
    """Route log records to journald or stderr; journal=None picks journald under systemd."""
    handler: logging.Handler | None = None
    missing_journal = False
    if journal is not False and (journal or under_systemd()):
        try:
            handler = journal_handler()
        except ImportError:
            missing_journal = True
    if handler is None:
        handler = _StderrHandler()
        handler.setFormatter(_StderrFormatter("%(message)s"))

    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if debug else logging.INFO)
    if missing_journal:
        # Only worth a warning when the journal was asked for explicitly.
        level = logging.WARNING if journal else logging.DEBUG
        logging.getLogger(__name__).log(
            level, "systemd-python is not installed; logging to stderr")
