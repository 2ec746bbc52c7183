"""Every exit code the agent returns: the one contract. No side effects.

`TABLE` holds, for each code, its meaning, the hint an operator gets by default, its LED blink
code and whether the provisioning unit runs again after it. The error classes (errors.py), the
LED mapping (system/led_signals.py) and `status` read it; the README's exit-code table is generated
from it (`make exit-codes`; a unit test fails when the README differs).
"""

from __future__ import annotations

from enum import IntEnum
from typing import NamedTuple


class Exit(IntEnum):
    """Process exit codes; TABLE says what each one means."""

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
    STATE = 28
    OUTPUT = 29
    # `pep-agent status` only: where provisioning is, in codes no error uses, so that a typo
    # in a polling script (exit 2) never reads as "still running".
    STATUS_FAILED = 30
    STATUS_RUNNING = 31
    STATUS_NOT_STARTED = 32
    STATUS_RETRYING = 33
    STATUS_DEFERRED = 34
    # An error again, numbered after the status codes.
    NO_SPACE = 35
    # Ended by a signal: 128 + its number (Linux: SIGINT 2, SIGPIPE 13, SIGTERM 15), as
    # shells, `timeout` and systemd report it. Written out: importing `signal` would slow
    # `status` and `--help`, which load this module.
    SIGINT = 130
    SIGPIPE = 141
    SIGTERM = 143


class Code(NamedTuple):
    """One row of the contract (a NamedTuple, not a dataclass: `status` and `--help` load
    this module, and a dataclass costs them its generated code at every start)."""

    meaning: str
    hint: str = ""  # the default hint of errors with this code
    blinks: int | None = None  # the failure LED blinks N times, pauses, repeats
    # The provisioning unit runs again after this exit (Restart=on-failure, not in its
    # RestartPreventExitStatus); None: not an exit of a provisioning run.
    restarted: bool | None = True
    led: str = ""  # the LED state when it is not a blink code ("" = left as it was)


_STATE_HINT = ("make the state directory writable, or set PEP_STATE_DIR to a writable "
               "directory on the identity's partition")

TABLE: dict[Exit, Code] = {
    Exit.OK: Code("success", restarted=False,
                  led="`success`, then `verified` after `verify`"),
    Exit.INTERNAL: Code(
        "internal error (a bug): the traceback is logged at error level, secrets redacted",
        "report the traceback from the journal (`journalctl -u pep-agent`)", led="`failed`"),
    Exit.USAGE: Code(
        "usage error (bad option, unknown LED state, reprovision without `--yes` and no "
        "terminal, `sim server --port` out of range)", restarted=False),
    Exit.CONFIG: Code(
        "configuration error (bad or out-of-range value, invalid URL, env file not UTF-8 or "
        "malformed or naming an unknown PEP_* setting, unknown profile, not root; `sim server` "
        "without the `sim` extra); recorded "
        "in the journal as a failed run when the state directory is writable",
        "check the options, PEP_* variables and /etc/default/pep-agent", restarted=False),
    Exit.SERIAL: Code("serial number missing or invalid",
                      "pass --serial or set PEP_SERIAL, or configure PEP_SERIAL_COMMAND",
                      blinks=1, restarted=False),
    Exit.NETWORK: Code("interface missing, no IPv4 address, or FCC's IP not on it",
                       "check the interface name (--interface) and that it has an IPv4 "
                       "address", blinks=2),
    Exit.FCC_START: Code("FCC missing, not executable, crashed, or did not print/open its port",
                         "check the FCC binary (--fcc-command) and its output", blinks=3),
    Exit.FCC_EXCHANGE: Code(
        "FCC exchange failed (non-zero exit, did not exit); the hint says what FCC printed "
        "last and that a rerun resumes from the saved answer",
        "FCC did not complete the factory exchange; see its output in the journal", blinks=4),
    Exit.SERVER_UNREACHABLE: Code(
        "server unreachable (refused, reset, timeout, TLS) after the retries; also \"recovery "
        "pending\": credentials kept for a record the server could not be asked about, or whose "
        "answer was not a pep server's (a 404 without its `Not found!`)",
        "check the server URL (--server / PEP_SERVER_URL) and the network path to it",
        blinks=5),
    Exit.ALREADY_PROVISIONED: Code(
        "serial already provisioned on the server (409): a deployed record from another "
        "gateway (duplicate serial), or a record the server never finished (404 from "
        "`GET /v3/enrollment-id`)", blinks=6, restarted=False),
    Exit.SERVER_ERROR: Code(
        "other server error (400, 401/403 from a proxy, a redirect, 429 or 5xx past the "
        "deadline, injection failed after FCC restarts, 404 to the identity request: a wrong "
        "server URL, or a record the server could not read back)", "see the pep server's log",
        blinks=7),
    Exit.BAD_RESPONSE: Code(
        "invalid server response (non-JSON, wrong serial, no enrollmentID, too large, a 404 "
        "without the pep server's own body `Not found!`: a wrong URL, a proxy, another web "
        "server)",
        "the server's answer is not what a pep server sends; check the server URL", blinks=8),
    Exit.INSTALL: Code("install failure: the credentials or identity.json (target exists, "
                       "disk full, read-only)",
                       "check free space and that /userdata is writable", blinks=9),
    Exit.SYSTEMD: Code("systemd operation failed",
                       "check `systemctl status` of the unit named above", blinks=10),
    Exit.VERIFICATION: Code("verification failed (edge-core not connected as the serial in time)",
                            "check `curl 127.0.0.1:9101/status` and edge-core's journal",
                            blinks=11, restarted=None),
    Exit.BUSY: Code("another provisioning run is active (for `verify`: when it records its "
                    "outcome)", "another provisioning run is active; see `pep-agent status`"),
    Exit.RESUME: Code(
        "cannot resume: the server holds a record (or answered) but FCC stored no credentials, "
        "or credentials that fail the check (empty, short or missing files)",
        blinks=13, restarted=False),
    Exit.SEALING: Code("journald cannot seal (FSS keys)",
                       "journald needs persistent storage (/var/log/journal) to seal logs",
                       blinks=14),
    Exit.NOT_FOUND: Code("not found on the server (404 with the pep server's own body "
                         "`Not found!`)",
                         "no deployed gateway has that serial number on this server",
                         restarted=None),
    Exit.ABORTED: Code("aborted by the operator at a prompt: nothing changed", restarted=None),
    Exit.LED: Code(
        "`pep-agent led`: the LED could not be driven (missing sysfs LED or one of the rgb "
        "triplet, failing LED command, backend `none`); the reason is on the error line",
        "check PEP_LED_BACKEND and PEP_LED_NAME (or PEP_LED_DIR, PEP_LED_COMMAND) against "
        "the board's LEDs", restarted=None),
    Exit.UNCONFIRMED: Code(
        "an installed identity for this serial, but no marker, and the server could not be "
        "asked whether it holds it: nothing was changed, edge-core keeps running on it, the "
        "next boot asks again (the unit counts it as a success); `status` says `deferred`",
        "make the pep server reachable and run `pep-agent provision` again to confirm it",
        restarted=False, led="`deferred`"),
    Exit.STATE: Code("the agent's own state cannot be used: the state directory, the journal "
                     "or the run lock cannot be read or written, or is a symbolic link",
                     _STATE_HINT, blinks=12),
    Exit.OUTPUT: Code("a file the operator asked for (`-f` of `list-enrollment-ids`, "
                      "`get-one-identity`'s identity.json) could not be written",
                      "check that the directory is writable and has free space",
                      restarted=None),
    Exit.STATUS_FAILED: Code("`status`: the run failed or was interrupted, and nothing runs it "
                             "again by itself", restarted=None),
    Exit.STATUS_RUNNING: Code("`status`: a run is in progress", restarted=None),
    Exit.STATUS_NOT_STARTED: Code("`status`: no run has started on this gateway",
                                  restarted=None),
    Exit.STATUS_RETRYING: Code(
        "`status`: the last run failed with a code the unit restarts (column \"restarted\"), "
        "and it failed less than 2 minutes ago: the unit runs it again by itself "
        "(`--wait` keeps waiting)", restarted=None),
    Exit.STATUS_DEFERRED: Code(
        "`status`: the last run found an installed identity the server could not confirm "
        "(exit 27): edge-core runs on it, the next run asks the server again", restarted=None),
    Exit.NO_SPACE: Code(
        "not enough free space for FCC's credentials where they are stored (checked before "
        "anything is changed), or FCC reported a storage error with too little space left; "
        "the error names the folder and its free space",
        "free space on /userdata, then run again", blinks=15),
    Exit.SIGINT: Code("aborted by SIGINT (Ctrl-C); the journal names the signal",
                      led="`failed`"),
    Exit.SIGPIPE: Code("the reader of the output went away (`pep-agent status | head -1`): "
                       "the command ends quietly, as SIGPIPE ends a Unix filter",
                       restarted=None),
    Exit.SIGTERM: Code("aborted by SIGTERM (`kill`, `timeout`, `systemctl stop`: systemd does "
                       "not restart a unit it stopped); the journal names the signal",
                       led="`failed`"),
}


def restarted(code: int) -> bool:
    """True when the provisioning unit runs again by itself after exiting with `code`."""
    try:
        return bool(TABLE[Exit(code)].restarted)
    except ValueError:
        return True  # systemd restarts on any code it was not told to prevent


def markdown_table() -> str:
    """The README's exit-code table, rendered from TABLE."""
    rows = ["| code | meaning | default hint | LED | blinks | restarted |",
            "|---|---|---|---|---|---|"]
    for code, row in TABLE.items():
        led = row.led
        if row.blinks is not None:
            led = "`failed-" + code.name.lower().replace("_", "-") + "`"
        again = {True: "yes", False: "no", None: ""}[row.restarted]
        blinks = "" if row.blinks is None else str(row.blinks)
        if code == Exit.INTERNAL:
            blinks = "fast flicker"
        rows.append(f"| {int(code)} | {row.meaning} | {row.hint} | {led} | {blinks} | {again} |")
    return "\n".join(rows) + "\n"

