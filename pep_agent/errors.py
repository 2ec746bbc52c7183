"""The error classes the core raises, each carrying an exit code of the contract
(exit_codes.py) and an operator hint. No side effects.

Only the CLI turns them into a process exit status. Messages never contain secrets: callers
pass operator-facing text only.
"""

from __future__ import annotations

import signal
from typing import Any

from pep_agent.exit_codes import TABLE, Exit


class Reported:
    """What the CLI and the journal need of any failure: code, message, hint."""

    code: Exit = Exit.INTERNAL
    message: str = ""
    hint: str = ""
    # Set once the error went to the log (with its journald fields), so that the CLI prints
    # only the hint and the operator does not read the same line twice.
    logged = False

    def as_dict(self) -> dict[str, Any]:
        """The journal's (and `status --json`'s) form: code, name, message, hint."""
        return {"code": int(self.code), "name": self.code.name, "message": self.message,
                "hint": self.hint}


class PepError(Reported, Exception):
    """Base class: an operator-facing one-line message, a hint and an exit code."""

    code: Exit = Exit.INTERNAL
    # Set on instances by the HTTP funnel: worth retrying with backoff, or a failed FCC
    # injection that is worth retrying after restarting FCC.
    transient = False
    injection_failed = False
    # Cleared by the HTTP funnel when the request cannot have left this machine (refused,
    # no such host, TLS handshake): it cannot have injected FCC.
    sent = True
    # Set by the HTTP funnel for a redirect or a 4xx: an answer given before any injection
    # (the pep server injects FCC only after it has accepted the request).
    refused = False
    # Seconds the server asked to wait before a retry (its Retry-After), when it said.
    retry_after: float | None = None

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = self.default_hint if hint is None else hint

    @property
    def default_hint(self) -> str:
        return TABLE[self.code].hint


class AbortedError(Reported, BaseException):
    """The run was stopped on purpose: a signal, or the operator said no at a prompt.

    A BaseException, like KeyboardInterrupt: no `except PepError` or `except Exception` (a
    retry loop, a fallback) may swallow it and carry on. Runners that record failures catch
    it by name, record `as_dict()` and re-raise.
    """

    def __init__(self, message: str, hint: str = "", *, signal: str | None = None,
                 code: Exit = Exit.ABORTED) -> None:
        super().__init__(message)
        self.message, self.hint, self.signal, self.code = message, hint, signal, code

    @classmethod
    def by_signal(cls, signum: int) -> AbortedError:
        name = signal.Signals(signum).name
        try:
            code = Exit(128 + signum)
        except ValueError:
            code = Exit.ABORTED
        return cls(f"aborted by {name}", signal=name, code=code)


class ConfigError(PepError):
    code = Exit.CONFIG


class UsageError(PepError):
    code = Exit.USAGE


class SerialError(PepError):
    code = Exit.SERIAL


class NetworkError(PepError):
    code = Exit.NETWORK


class FccStartError(PepError):
    code = Exit.FCC_START


class FccExitedError(FccStartError):
    """FCC exited before anything was sent to it (before or just after printing its port):
    nothing can have been injected, so starting it again is safe."""


class FccExchangeError(PepError):
    code = Exit.FCC_EXCHANGE


class IdentityUnconfirmedError(PepError):
    """An installed identity without a marker that the server could not confirm: kept as it is
    (a gateway in the field, far from any pep server, keeps working on it)."""

    code = Exit.UNCONFIRMED


class ServerUnreachableError(PepError):
    code = Exit.SERVER_UNREACHABLE


class AlreadyProvisionedError(PepError):
    code = Exit.ALREADY_PROVISIONED


class ServerError(PepError):
    code = Exit.SERVER_ERROR


class BadResponseError(PepError):
    code = Exit.BAD_RESPONSE


class InstallError(PepError):
    code = Exit.INSTALL


class NoSpaceError(PepError):
    """Too little free space for FCC's credentials."""

    code = Exit.NO_SPACE


class StateError(PepError):
    """The agent's own state: state directory, journal, run lock."""

    code = Exit.STATE


class OutputError(PepError):
    """A file the operator asked a command to write."""

    code = Exit.OUTPUT


class SystemdError(PepError):
    code = Exit.SYSTEMD


class VerificationError(PepError):
    code = Exit.VERIFICATION


class BusyError(PepError):
    code = Exit.BUSY


class ResumeError(PepError):
    code = Exit.RESUME


class SealingError(PepError):
    code = Exit.SEALING


class NotFoundError(PepError):
    code = Exit.NOT_FOUND


class LedError(PepError):
    code = Exit.LED

