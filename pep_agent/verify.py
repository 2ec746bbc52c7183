"""Proof of provisioning: edge-core connected to the cloud under the serial we sent.

Side effects: HTTP GETs to edge-core's status endpoint (through `read`), sleeping between
them, and log lines when the status changes. No files, no LED: the CLI does those.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Any

from pep_agent.errors import VerificationError
from pep_agent.system.edgecore import read_status

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
