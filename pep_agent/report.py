"""`pep-agent status`: the journal turned into a stable document and a human summary.

Side effects: reads the journal and the markers; `edge_core` makes one local HTTP GET to
edge-core's status.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from pep_agent import state
from pep_agent.errors import PepError, StateError
from pep_agent.exit_codes import Exit, restarted
from pep_agent.settings.paths import Paths

# A failed run that pep-agent.service runs again by itself (exit_codes.TABLE, "restarted").
RETRYING = "retrying"
# How long a failed journal reads as "retrying": the unit's RestartSec (30 s) plus the start of
# the next run, with margin. A failure older than this was not restarted (a manual run, or a
# unit that was stopped): it is a failure.
RESTART_WINDOW_S = 120.0

# The keys of `status --json`, a contract for factory tools (README, "Status JSON").
KEYS = ("state", "step", "serial", "enrollment_id", "attempt", "next_retry_in", "error",
        "started_at", "finished_at", "updated_at", "verified_at", "resumed", "interface",
        "fcc_ip", "fcc_port", "parsec", "profile", "server", "steps", "timings", "verify")


def status_document(paths: Paths, *, now: float | None = None) -> dict[str, Any]:
    """The status of provisioning; StateError when the state cannot be read (not root)."""
    try:
        return _document(paths, time.time() if now is None else now)
    except PermissionError:
        raise StateError("cannot read the provisioning state: permission denied",
                         hint="run it as root (sudo pep-agent status)") from None


def _document(paths: Paths, now: float) -> dict[str, Any]:
    for place in (paths.state_dir, paths.journal):
        # state.load reads an unreadable journal as absent: say so instead of "not-started".
        if place.exists() and not os.access(place, os.X_OK if place.is_dir() else os.R_OK):
            raise PermissionError(place)
    data = state.load(paths.journal)
    doc: dict[str, Any] = {k: data.get(k) for k in KEYS}
    doc["schema"] = state.SCHEMA
    doc["state"] = state.effective_state(data)
    if doc["state"] == state.FAILED and not paths.sandboxed and will_restart(data, now):
        doc["state"] = RETRYING
    doc["steps"] = data.get("steps") or {}
    doc["timings"] = timings(data)
    doc["provisioned"] = paths.provisioned_marker.exists()
    if doc["provisioned"] and doc["state"] == state.NOT_STARTED:
        # The markers outlive a missing or reset journal: they say what the gateway is.
        doc["state"] = state.VERIFIED if paths.verified_marker.exists() else state.DONE
        doc["serial"] = doc["serial"] or _read_marker(paths.provisioned_marker)
    doc["verify"] = verify_outcome(data)
    doc["edge_core"] = None
    return doc


def will_restart(data: dict[str, Any], now: float) -> bool:
    """A failed run that the unit runs again: its code is restarted, and it is recent."""
    code = (data.get("error") or {}).get("code")
    ended = data.get("finished_at") or data.get("updated_at")
    if not isinstance(code, int) or not isinstance(ended, (int, float)):
        return False
    # A clock set back since (no RTC, then NTP) makes the age negative: still recent.
    return restarted(code) and now - ended < RESTART_WINDOW_S


def verify_outcome(data: dict[str, Any]) -> dict[str, Any] | None:
    """The last `verify`: its state ("verified" or "failed") and its error; None before one."""
    outcome = data.get("verify_state")
    if outcome not in ("verified", "failed"):
        return None
    error = data.get("verify_error")
    return {"state": outcome, "error": error if isinstance(error, dict) else None}


def _read_marker(path: Path) -> str | None:
    try:
        return str(path.read_text(encoding="utf-8").strip()) or None
    except (OSError, ValueError):
        return None


def edge_core(status_url: str) -> dict[str, Any]:
    """edge-core's connection as its status endpoint reports it, or why it cannot be read."""
    # Here only: it loads urllib.request, and status reads edge-core only on a provisioned
    # gateway.
    from pep_agent.system.edgecore import read_status

    try:
        data = read_status(status_url, timeout=1.0)
    except PepError as e:
        return {"status": "unreachable", "detail": e.message}
    keep = ("status", "endpoint-name", "error_code", "error_description")
    return {k: data[k] for k in keep if k in data}


def timings(data: dict[str, Any]) -> dict[str, float | None]:
    """Step durations, and the agent's own share: total minus server and FCC waiting."""
    steps = data.get("steps") or {}
    durations = {name: float(s.get("duration_s") or 0.0) for name, s in steps.items()}
    total = sum(durations.values())
    outside = sum(durations.get(name, 0.0) for name in (
        state.REQUEST_IDENTITY, state.START_FCC, state.WAIT_FCC, state.WAIT_NETWORK))
    return {"total_s": round(total, 4) if steps else None,
            "server_request_s": data.get("server_request_s"),
            "fcc_and_server_s": round(outside, 4) if steps else None,
            "agent_s": round(total - outside, 4) if steps else None}


def exit_code(st: str) -> Exit:
    """`status`'s exit code: 0 done, else a 30-range code no error uses (exit_codes.TABLE)."""
    if st in (state.DONE, state.VERIFIED):
        return Exit.OK
    if st in (state.FAILED, state.INTERRUPTED):
        return Exit.STATUS_FAILED
    if st == state.RUNNING:
        return Exit.STATUS_RUNNING
    if st == RETRYING:
        return Exit.STATUS_RETRYING
    if st == state.DEFERRED:
        return Exit.STATUS_DEFERRED
    return Exit.STATUS_NOT_STARTED


def human(doc: dict[str, Any]) -> str:
    lines = [f"state:         {doc['state']}"]
    if doc.get("step"):
        step_state = (doc["steps"].get(doc["step"]) or {}).get("status", "")
        lines.append(f"step:          {doc['step']} ({step_state})")
    if doc.get("serial"):
        lines.append(f"serial:        {doc['serial']}")
    if doc.get("enrollment_id"):
        lines.append(f"enrollment id: {doc['enrollment_id']}")
    if doc.get("attempt"):
        retry = doc.get("next_retry_in")
        more = f", next try in {retry:.1f} s" if retry and doc["state"] == "running" else ""
        if doc["state"] == RETRYING:
            more = ", the unit runs it again"
        lines.append(f"attempt:       {doc['attempt']}{more}")
    err = doc.get("error")
    if err:
        code = f" (exit {err['code']})" if err.get("code") is not None else ""
        # A deferral is no error: the gateway works on its identity, to be confirmed.
        label = "reason:" if doc["state"] == state.DEFERRED else "error:"
        lines.append(f"{label:<15}{err.get('message') or 'not recorded'}{code}")
        if err.get("hint"):
            lines.append(f"hint:          {err['hint']}")
    edge = doc.get("edge_core")
    if edge:
        detail = edge.get("endpoint-name") or edge.get("detail") or ""
        lines.append(f"edge-core:     {edge.get('status')}" + (f" ({detail})" if detail else ""))
    verify = doc.get("verify") or {}
    if verify.get("state") == "failed":
        failure = verify.get("error") or {}
        lines.append(f"verify:        failed: {failure.get('message')} "
                     f"(exit {failure.get('code')})")
        if failure.get("hint"):
            lines.append(f"verify hint:   {failure['hint']}")
    elif doc.get("verified_at"):
        lines.append("verified:      edge-core connected as the serial")
    t = doc.get("timings") or {}
    if t.get("total_s") is not None:
        lines.append(f"time:          {t['total_s']:.2f} s "
                     f"(agent {t['agent_s']:.3f} s, FCC and server {t['fcc_and_server_s']:.2f} s)")
    return "\n".join(lines)
