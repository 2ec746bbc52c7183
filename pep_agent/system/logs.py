"""Logging set-up: journald with structured fields under systemd, plain stderr lines otherwise;
and `redact`, the one place that masks secrets in any text.

Side effect: replaces the handlers of the root logger and sets its level. systemd.journal is
imported only when the journal is actually used. Every handler set up here (journald and
stderr alike) carries the redacting filter, so every line, a traceback's text included, is
masked whichever logger wrote it: identity documents, PEM blocks, journald verification keys,
`verificationKey` values and every value the process sent as a secret.

Callers attach structured fields with `extra`, e.g.
`log.info("server answered", extra={"PEP_STEP": "request", "PEP_ATTEMPT": 2})`.
systemd-python's JournalHandler (234/235) sends every attribute of the log record as a
journal field, so upper-case `extra` keys arrive as fields of the same name; the lower-case
attributes of LogRecord are not valid field names and journald drops them.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, quote_plus

IDENTIFIER = "pep-agent"
FIELD_PREFIX = "PEP_"
REDACTED = "[redacted]"

# Every secret value this process sent; shorter strings would mask ordinary words.
_sent_secrets: set[str] = set()
_MIN_SECRET = 6
_SECRET_PARAM = re.compile(r"""(verificationKey["']?\s*[=:]\s*["']?)[^&\s"',}]*""", re.IGNORECASE)
# What `journalctl --setup-keys` prints: hex groups joined by '-', then '/' and two hex numbers.
_FSS_KEY = re.compile(r"\b[0-9a-f]{6}(?:-[0-9a-f]{6})+(?:/[0-9a-f]+-[0-9a-f]+)?\b")
# A PEM block, or its start when the text is cut short.
_PEM = re.compile(r"-----BEGIN [A-Z0-9 ]+-----.*?(?:-----END [A-Z0-9 ]+-----|$)", re.DOTALL)
# Keys that only an identity document (the server's answer, identity.json) holds.
_IDENTITY_KEY = re.compile(
    r"""["']?(?:enrollmentID|gatewayServicesAddress|cloudAddress|deviceID)["']?\s*:""")


def remember_secret(value: str) -> None:
    """From now on, `value` is masked in every text that redact() sees."""
    if len(value) >= _MIN_SECRET:
        _sent_secrets.add(value)


def redact(text: str) -> str:
    """`text` with every secret masked: sent secrets (raw or URL-encoded), verificationKey
    values, journald verification keys, PEM blocks and whole identity documents."""
    for secret in _sent_secrets:
        for form in {secret, quote(secret, safe=""), quote_plus(secret)}:
            text = re.sub(re.escape(form), REDACTED, text, flags=re.IGNORECASE)
    text = _SECRET_PARAM.sub(r"\1" + REDACTED, text)
    text = _FSS_KEY.sub(REDACTED, text)
    text = _PEM.sub(REDACTED, text)
    return _without_identity_documents(text)


def _without_identity_documents(text: str) -> str:
    """Each object (JSON or a Python repr) holding an identity key, replaced whole."""
    while True:
        key = _IDENTITY_KEY.search(text)
        if key is None:
            return text
        start, end, depth = key.start(), len(text), 0
        for i in range(key.start() - 1, -1, -1):  # the enclosing "{"
            if text[i] == "}":
                depth += 1
            elif text[i] == "{":
                if depth == 0:
                    start = i
                    break
                depth -= 1
        depth = 0
        for i in range(key.end(), len(text)):  # its "}", or the end of a cut text
            if text[i] == "{":
                depth += 1
            elif text[i] == "}":
                if depth == 0:
                    end = i + 1
                    break
                depth -= 1
        text = text[:start] + "{" + REDACTED + " identity document}" + text[end:]


class _Redact(logging.Filter):
    """Masks secrets in a record's message, its traceback and its PEP_* fields, once for every
    handler: the journal gets the masked traceback as EXCEPTION_TEXT, and never the exception
    object itself (systemd-python would send its repr as EXCEPTION_INFO)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            text = record.getMessage()
        except Exception:  # a broken format call: its arguments would reach handleError raw
            text = f"{record.msg} (log arguments that do not fit the format, not shown)"
        record.msg, record.args = redact(text), None
        if record.exc_info:
            if not record.exc_text:
                record.exc_text = logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        for key, value in list(vars(record).items()):
            if key.startswith(FIELD_PREFIX) and isinstance(value, str):
                setattr(record, key, redact(value))
        return True


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
    handler.addFilter(_Redact())
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
        handler.addFilter(_Redact())

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
