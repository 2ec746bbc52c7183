"""Every exit code the agent returns, and the error classes that carry them. No side effects.

The core raises these; only the CLI turns them into a process exit status. Messages never
contain secrets: callers pass operator-facing text only.
"""

from __future__ import annotations

from enum import IntEnum


class Exit(IntEnum):
    """Process exit codes. The README's table is generated from the same meanings."""

    OK = 0
    INTERNAL = 1
    USAGE = 2
    CONFIG = 3
    SERIAL = 10
    NETWORK = 11
    FCC_START = 12
    FCC_EXCHANGE = 13
    SERVER_UNREACHABLE = 14
    ALREADY_PROVISIONED = 15
    SERVER_ERROR = 16
    BAD_RESPONSE = 17
    INSTALL = 18
    SYSTEMD = 19
    VERIFICATION = 20
    BUSY = 21
    RESUME = 22
    SEALING = 23
    NOT_FOUND = 24
    ABORTED = 25
    LED = 26
    UNCONFIRMED = 27


class PepError(Exception):
    """Base class: an operator-facing one-line message, a hint and an exit code."""

    code: Exit = Exit.INTERNAL
    default_hint = ""
    # Set on instances by the HTTP funnel: worth retrying with backoff, or a failed FCC
    # injection that is worth retrying after restarting FCC.
    transient = False
    injection_failed = False
    # Cleared by the HTTP funnel when the request cannot have left this machine (refused,
    # no such host, TLS handshake): it cannot have injected FCC.
    sent = True
    # Seconds the server asked to wait before a retry (its Retry-After), when it said.
    retry_after: float | None = None
    # Set once the error went to the log (with its journald fields), so that the CLI prints
    # only the hint and the operator does not read the same line twice.
    logged = False

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = self.default_hint if hint is None else hint

    def __str__(self) -> str:
        return self.message

    def as_dict(self) -> dict[str, object]:
        """The error as the journal records it."""
        return {"code": int(self.code), "name": self.code.name, "message": self.message,
                "hint": self.hint}


class ConfigError(PepError):
    code = Exit.CONFIG
    default_hint = "check the options, PEP_* variables and /etc/default/pep-agent"


class UsageError(PepError):
    code = Exit.USAGE


class SerialError(PepError):
    code = Exit.SERIAL
    default_hint = "pass --serial or set PEP_SERIAL, or configure PEP_SERIAL_COMMAND"


class NetworkError(PepError):
    code = Exit.NETWORK
    default_hint = "check the interface name (--interface) and that it has an IPv4 address"


class FccStartError(PepError):
    code = Exit.FCC_START
    default_hint = "check the FCC binary (--fcc-command) and its output"


class FccExchangeError(PepError):
    code = Exit.FCC_EXCHANGE
    default_hint = "FCC did not complete the factory exchange; see its output in the journal"


class IdentityUnconfirmedError(PepError):
    """An installed identity without a marker that the server could not confirm: kept as it is
    (a gateway in the field, far from any pep server, keeps working on it)."""

    code = Exit.UNCONFIRMED


class ServerUnreachableError(PepError):
    code = Exit.SERVER_UNREACHABLE
    default_hint = "check the server URL (--server / PEP_SERVER_URL) and the network path to it"


class AlreadyProvisionedError(PepError):
    code = Exit.ALREADY_PROVISIONED


class ServerError(PepError):
    code = Exit.SERVER_ERROR
    default_hint = "see the pep server's log"


class BadResponseError(PepError):
    code = Exit.BAD_RESPONSE
    default_hint = "the server's answer is not what a pep server sends; check the server URL"


class InstallError(PepError):
    code = Exit.INSTALL
    default_hint = "check free space and that /userdata is writable"


class SystemdError(PepError):
    code = Exit.SYSTEMD
    default_hint = "check `systemctl status` of the unit named above"


class VerificationError(PepError):
    code = Exit.VERIFICATION
    default_hint = "check `curl 127.0.0.1:9101/status` and edge-core's journal"


class BusyError(PepError):
    code = Exit.BUSY
    default_hint = "another provisioning run is active; see `pep-agent status`"


class ResumeError(PepError):
    code = Exit.RESUME


class SealingError(PepError):
    code = Exit.SEALING
    default_hint = "journald needs persistent storage (/var/log/journal) to seal logs"


class NotFoundError(PepError):
    code = Exit.NOT_FOUND
    default_hint = "no deployed gateway has that serial number on this server"


class AbortedError(PepError):
    code = Exit.ABORTED


class LedError(PepError):
    code = Exit.LED
    default_hint = ("check PEP_LED_BACKEND and PEP_LED_NAME (or PEP_LED_DIR, PEP_LED_COMMAND) "
                    "against the board's LEDs")
