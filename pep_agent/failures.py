"""A failure the flow never saw, recorded where `status` reads it.

A configuration error (or an invalid --serial) ends `provision` before the flow opens its
journal; without a record, `status` would say "not-started" and `status --wait` would wait out
its whole timeout. It is recorded as a run's ending is (flow/ending.py's `end_record`).

Side effects: under the run lock, creates the state directory (its entry fsync'd) when it is
missing and its parent exists, and sets `state`, `error` and `finished_at` in the journal;
nothing else.
"""

from __future__ import annotations

import logging
import time

from pep_agent.errors import BusyError, PepError, StateError
from pep_agent.flow.ending import end_record
from pep_agent.journal import Journal
from pep_agent.settings.paths import Paths
from pep_agent.system.fsutil import make_dir
from pep_agent.system.lock import RunLock

log = logging.getLogger(__name__)


def record_failure(paths: Paths, err: PepError) -> bool:
    """Record `err` as the run's failure; False (and nothing written) when it cannot be.

    Never raises: the operator's error is `err`, whatever happens here. Bad input changes
    nothing on a gateway with the `provisioned` marker: its journal is left as it is. Every
    other field of an existing journal (the recovery rule's evidence among them) is kept.
    """

    if paths.provisioned_marker.exists() or not paths.state_dir.parent.is_dir():
        return False
    try:
        # A fresh gateway has no state directory yet (only its parent, the identity's
        # partition, or the unit's StateDirectory= elsewhere): made here as a run makes it.
        make_dir(paths.state_dir, mode=0o700)
        with RunLock(paths.lock):
            Journal(paths.journal).update(**end_record(err, provisioned=False, now=time.time()))
    except (OSError, BusyError, StateError) as e:
        # Not root, a read-only disk, another run holding the lock: status cannot learn of it.
        log.debug("configuration error not recorded in the journal: %s", e)
        return False
    return True
