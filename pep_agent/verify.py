"""Proof of provisioning: edge-core connected to the cloud under the serial we sent.

Side effects: `verify` makes HTTP GETs to edge-core's status endpoint (through `read`), sleeps
between them and logs when the status changes. `verify_connection` also shows the LED and,
under the run lock, writes its own journal fields and the verified marker.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Any

from pep_agent import state
from pep_agent.errors import BusyError, PepError, StateError, VerificationError
from pep_agent.flow.context import make_led_for
from pep_agent.flow.ending import announce
from pep_agent.gateway.identity import read_installed
from pep_agent.journal import Journal
from pep_agent.settings.config import Settings
from pep_agent.system import fsutil
from pep_agent.system.edgecore import read_status
from pep_agent.system.lock import RunLock

log = logging.getLogger(__name__)

MAX_READ_TIMEOUT = 5.0
MIN_READ_TIMEOUT = 0.5


def verify(*, status_url: str, serial: str, deadline_s: float, interval: float = 2.0,
           sleep: Callable[[float], None] = time.sleep,
           clock: Callable[[], float] = time.monotonic,
           read: Callable[[str, float], dict[str, Any]] = read_status) -> dict[str, Any]:
    """Poll until status is "connected" with endpoint-name == serial; return that status.

    Raises VerificationError naming the last thing seen when `deadline_s` passes.
    """
    interval = max(interval, 0.01)
    start = clock()
    # The count bound holds even if the clock does not move.
    attempts = max(1, math.ceil(deadline_s / interval) + 1)
    last: dict[str, Any] | None = None
    last_error: VerificationError | None = None
    seen: tuple[object, object] | None = None
    for attempt in range(1, attempts + 1):
        remaining = deadline_s - (clock() - start)
        try:
            status = read(status_url, min(MAX_READ_TIMEOUT, max(MIN_READ_TIMEOUT, remaining)))
        except VerificationError as e:
            last_error = e
            log.debug("edge-core status: %s", e, extra={"PEP_STEP": "verify",
                                                          "PEP_ATTEMPT": attempt})
        else:
            last, last_error = status, None
            now_seen = (status.get("status"), status.get("endpoint-name"))
            if now_seen != seen:
                seen = now_seen
                log.info("edge-core status %s, endpoint-name %s", *now_seen,
                         extra={"PEP_STEP": "verify", "PEP_ATTEMPT": attempt})
            if _proven(status, serial):
                return status
        if attempt == attempts or clock() - start + interval > deadline_s:
            break
        sleep(interval)
    raise VerificationError(_failure(last, last_error, serial, deadline_s))


def _proven(status: dict[str, Any], serial: str) -> bool:
    return status.get("status") == "connected" and status.get("endpoint-name") == serial


def _failure(last: dict[str, Any] | None, error: VerificationError | None, serial: str,
             deadline_s: float) -> str:
    """One line saying what was seen last, for the operator."""
    after = f" after {deadline_s:g} s"
    if last is None:
        return (str(error) if error else "edge-core status endpoint not answering") + after
    state = last.get("status")
    if state == "connected":
        return (f"endpoint-name {last.get('endpoint-name')!r} does not match serial "
                f"{serial!r}{after}")
    text = f"edge-core status stayed {state!r}{after}"
    if state == "error":
        detail = " ".join(str(last[k]) for k in ("error_code", "error_description") if k in last)
        text += f" ({detail})" if detail else ""
    if error is not None:
        text += f"; then {error}"
    return text


def verify_connection(settings: Settings) -> dict[str, Any]:
    """Poll edge-core until it is connected as the installed serial; record the outcome.

    The journal belongs to provisioning runs: verify records only its own fields, under the run
    lock, on the journal as it is then, and only while the gateway still holds the serial it
    polled for, so a reprovision during the poll is never undone.
    """
    led = make_led_for(settings)
    serial = installed_serial(settings)
    if not serial:
        raise VerificationError("this gateway has not been provisioned", hint="run provision")
    try:
        result = verify(status_url=settings.status_url,
                        serial=serial, deadline_s=settings.verify_timeout)
    except PepError as e:
        _record(settings, serial, verify_state="failed", verify_error=e.as_dict(),
                verify_failed_at=time.time())
        announce(e, led=led, notifier=None, fields={"PEP_STEP": "verify", "PEP_SERIAL": serial})
        raise
    _record(settings, serial, verify_state="verified", verify_error=None,
            verified_at=time.time())
    log.info("edge-core connected as %s", serial, extra={"PEP_STEP": "verify",
                                                         "PEP_SERIAL": serial})
    led.show("verified")
    return result


def _record(settings: Settings, serial: str, **fields: Any) -> None:
    """Write verify's outcome, unless the gateway changed hands while verify was polling."""
    paths = settings.paths
    try:
        with RunLock(paths.lock):
            now = installed_serial(settings)
            if now != serial:
                raise VerificationError(
                    f"the gateway was reprovisioned while verify waited for serial {serial} "
                    f"(now {now or 'not provisioned'}); nothing recorded",
                    hint="run `pep-agent verify` again")
            journal = Journal(paths.journal)  # as it is now, not as it was at the start
            if fields.get("verify_state") == "verified":
                fsutil.atomic_write(paths.verified_marker, f"{serial}\n".encode(), mode=0o644)
                if journal.record.state in (None, state.DONE):
                    fields["state"] = state.VERIFIED
            journal.update(**fields)
    except BusyError:
        raise BusyError("a provisioning run started while verify waited; nothing recorded",
                        hint="see `pep-agent status`; verify again once that run has ended"
                        ) from None
    except OSError as e:
        raise fsutil.os_error(StateError, "recording the verification", e) from None


def installed_serial(settings: Settings) -> str:
    """The serial edge-core will connect as: identity.json's, else the provisioned marker's."""
    paths = settings.paths
    installed = read_installed(paths.under(settings.profile.identity_json))
    if installed is not None:
        return installed.serial
    try:
        return paths.provisioned_marker.read_text(encoding="utf-8").strip()
    except (OSError, ValueError):
        return ""
