"""`pep-agent status`: the journal turned into a stable document and a human summary.

Side effects: reads the journal; nothing else (no HTTP, no heavy imports).
"""

from __future__ import annotations

from typing import Any

from pep_agent import state
from pep_agent.paths import Paths

# The keys of `status --json`, a contract for factory tools (README, "Status JSON").
KEYS = ("state", "step", "serial", "enrollment_id", "attempt", "next_retry_in", "error",
        "started_at", "finished_at", "updated_at", "verified_at", "resumed", "interface",
        "fcc_ip", "fcc_port", "parsec", "profile", "server", "steps", "timings")


def status_document(paths: Paths) -> dict[str, Any]:
    data = state.load(paths.journal)
    doc: dict[str, Any] = {k: data.get(k) for k in KEYS}
    doc["schema"] = state.SCHEMA
    doc["state"] = state.effective_state(data)
    doc["steps"] = data.get("steps") or {}
    doc["timings"] = timings(data)
    doc["provisioned"] = paths.provisioned_marker.exists()
    return doc


def timings(data: dict[str, Any]) -> dict[str, float | None]:
    """Step durations, and the agent's own share: total minus server and FCC waiting."""
    steps = data.get("steps") or {}
    durations = {name: float(s.get("duration_s") or 0.0) for name, s in steps.items()}
    total = sum(durations.values())
    outside = (durations.get("request-identity", 0.0) + durations.get("start-fcc", 0.0)
               + durations.get("wait-fcc", 0.0) + durations.get("wait-network", 0.0))
    return {"total_s": round(total, 4) if steps else None,
            "server_request_s": data.get("server_request_s"),
            "fcc_and_server_s": round(outside, 4) if steps else None,
            "agent_s": round(total - outside, 4) if steps else None}


def exit_code(st: str) -> int:
    """Like `cloud-init status`: 0 done, 1 failed, 2 running or not yet run."""
    if st in (state.DONE, state.VERIFIED):
        return 0
    if st in (state.FAILED, state.INTERRUPTED):
        return 1
    return 2


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
        lines.append(f"attempt:       {doc['attempt']}{more}")
    err = doc.get("error")
    if err:
        lines.append(f"error:         {err.get('message')} (exit {err.get('code')})")
        if err.get("hint"):
            lines.append(f"hint:          {err['hint']}")
    if doc.get("verified_at"):
        lines.append("edge-core:     connected (verified)")
    t = doc.get("timings") or {}
    if t.get("total_s") is not None:
        lines.append(f"time:          {t['total_s']:.2f} s "
                     f"(agent {t['agent_s']:.3f} s, FCC and server {t['fcc_and_server_s']:.2f} s)")
    return "\n".join(lines)
