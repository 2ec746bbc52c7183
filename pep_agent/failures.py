"""A failure the flow never saw, recorded where `status` reads it.

A configuration error (or an invalid --serial) ends `provision` before the flow opens its
journal; without a record, `status` would say "not-started" and `status --wait` would wait out
its whole timeout. Side effects: under the run lock, creates the state directory when its
parent exists, and sets `state`, `error` and `finished_at` in the journal; nothing else.
"""

from __future__ import annotations

import logging
import time

from pep_agent import state
from pep_agent.errors import BusyError, PepError, StateError
from pep_agent.paths import Paths

log = logging.getLogger(__name__)


def record_failure(paths: Paths, err: PepError) -> bool:
    """Record `err` as the run's failure; False (and nothing written) when it cannot be.

    Never raises: the operator's error is `err`, whatever happens here. A gateway with the
    `provisioned` marker keeps its journal: a bad setting does not unprovision it. Every other
    field of an existing journal (the recovery rule's evidence among them) is kept.
    """
    from pep_agent.system.lock import RunLock

    try:
        if paths.provisioned_marker.exists() or not paths.state_dir.parent.is_dir():
            return False
        with RunLock(paths.lock):
            journal = state.Journal(paths.journal)
            journal.update(schema=state.SCHEMA, state=state.FAILED, finished_at=time.time(),
                           error=err.as_dict())
    except (OSError, BusyError, StateError) as e:
        # Not root, a read-only disk, another run holding the lock: status cannot learn of it.
        log.debug("configuration error not recorded in the journal: %s", e)
        return False
    return True
