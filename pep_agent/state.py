"""Reading the journal of a provisioning run (`<state_dir>/state.json`), light enough for
`pep-agent status`: its states, its step names, its fields and their types, and whether a run
is alive.
journal.py writes it.

Side effects: reads the journal; reads the process table (through system/proc.py) to tell a
live run from a dead one.
The journal holds no secrets: the identity response lives in its own 0600 file.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

SCHEMA = 1

# Overall states, as `pep-agent status` reports them.
NOT_STARTED = "not-started"
RUNNING = "running"
DONE = "provisioned"
VERIFIED = "verified"
FAILED = "failed"
INTERRUPTED = "interrupted"
# An installed identity for this serial that the server could not confirm (exit 27): nothing
# was changed, edge-core runs on it, and the next run asks the server again.
DEFERRED = "deferred"


def load(path: Path) -> dict[str, Any]:
    """The journal's content, or {} when absent or unreadable (a torn file cannot happen).

    A value of the wrong type (a hand-edited or foreign file) is dropped, as if absent, so
    that every reader (status, a resumed run) can trust the types in FIELDS.
    """
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError, RecursionError):
        return {}
    return checked(data) if isinstance(data, dict) else {}


# The steps, in the journal, `status` and the test crash points: stable across versions.
PREFLIGHT = "preflight"
DISCOVER_SERIAL = "discover-serial"
WAIT_NETWORK = "wait-network"
STOP_EDGE_CORE = "stop-edge-core"
CLEAR_IDENTITY = "clear-identity"
START_FCC = "start-fcc"
REQUEST_IDENTITY = "request-identity"
WAIT_FCC = "wait-fcc"
INSTALL = "install"
RELEASE_EDGE_CORE = "release-edge-core"
MARK_PROVISIONED = "mark-provisioned"
REBOOT = "reboot"


_STR, _INT, _NUM, _BOOL, _DICT, _LIST = "str", "int", "number", "bool", "dict", "list"
# The type of every field of the journal (journal.Record has exactly these); null is always
# allowed (not set).
FIELDS: dict[str, str] = {
    **dict.fromkeys(("state", "step", "serial", "serial_source", "enrollment_id", "interface",
                     "ip", "fcc_ip", "profile", "server", "run_id", "last_attempt_error",
                     "verify_state"), _STR),
    **dict.fromkeys(("schema", "attempt", "pid", "fcc_pid", "fcc_port"), _INT),
    # pid_start and fcc_started: start times as psutil gives them (seconds since the epoch),
    # to recognise a reused pid.
    **dict.fromkeys(("pid_start", "next_retry_in", "started_at", "updated_at", "finished_at",
                     "verified_at", "verify_failed_at", "server_request_s", "fcc_started"), _NUM),
    # The query fields journalled before an identity request (the recovery rule rebuilds
    # identity.json from them): text only, checked entry by entry below.
    "injection": _DICT,
    # The step entries, the run's error and verify's, each checked field by field below.
    **dict.fromkeys(("steps", "error", "verify_error"), _DICT),
    # The identity folders clear-identity moved aside (their paths under the root).
    "previous_identity": _LIST,
    **dict.fromkeys(("parsec", "resumed", "response_saved", "rebuilt_answer", "adopted",
                     "restored_previous"), _BOOL),
}
# Steps renamed since an earlier version, read under their names of today. The step that
# releases edge-core's hold was called "unmask-edge-core", though nothing is masked.
RENAMED_STEPS = {"unmask-edge-core": "release-edge-core"}
ERROR_FIELDS = {"code": _INT, "name": _STR, "message": _STR, "hint": _STR}
STEP_FIELDS = {"status": _STR, "started_at": _NUM, "ended_at": _NUM, "duration_s": _NUM}


def _is(kind: str, value: Any) -> bool:
    if value is None:
        return True
    if kind == _STR:
        return isinstance(value, str)
    if kind == _BOOL:
        return isinstance(value, bool)
    if kind == _DICT:
        return isinstance(value, dict)
    if kind == _LIST:
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    if isinstance(value, bool):  # JSON true is not a number here
        return False
    if kind == _INT:
        return isinstance(value, int)
    return isinstance(value, (int, float)) and math.isfinite(value)


def _typed(data: Mapping[str, Any], kinds: Mapping[str, str], *,
           only_known: bool = False) -> dict[str, Any]:
    return {k: v for k, v in data.items()
            if (_is(kinds[k], v) if k in kinds else not only_known)}


def checked(data: Mapping[str, Any]) -> dict[str, Any]:
    """`data` without the values whose type is not the journal's (see FIELDS)."""
    out = _typed(data, FIELDS)
    for key in ("error", "verify_error"):
        error = out.get(key)
        if error is not None:
            # Only the known fields: status prints these objects whole (no NaN in its JSON).
            out[key] = (_typed(error, ERROR_FIELDS, only_known=True) if isinstance(error, dict)
                        else None)
    injection = out.get("injection")
    if injection is not None:
        out["injection"] = {k: v for k, v in injection.items() if isinstance(v, str)}
    steps = out.get("steps")
    if steps is not None:
        out["steps"] = ({RENAMED_STEPS.get(name, name): _typed(entry, STEP_FIELDS,
                                                               only_known=True)
                         for name, entry in steps.items()
                         if isinstance(entry, dict)} if isinstance(steps, dict) else {})
    if out.get("step") in RENAMED_STEPS:
        out["step"] = RENAMED_STEPS[out["step"]]
    return out


def effective_state(data: dict[str, Any]) -> str:
    """The state to report: a 'running' journal whose process is gone was interrupted."""
    state = str(data.get("state") or NOT_STARTED)
    if state == RUNNING and not _alive(data.get("pid"), data.get("pid_start")):
        return INTERRUPTED
    return state


def _alive(pid: Any, started: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    from pep_agent.system.proc import same_process  # psutil only when a run may be alive

    return same_process(pid, started if _is(_NUM, started) and started is not None else None)
