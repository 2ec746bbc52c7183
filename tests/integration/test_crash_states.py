"""The crash-state explorer: every on-disk state a power cut could leave during a
provision, under four persistence models, each followed by a plain rerun of the agent.

The provision is recorded under strace (tests/crash/explore.py), the states are built from
its durable-state operations (tests/crash/fsmodel.py), and each is judged: no identity the
server holds may be lost (also not by the cut itself: the server holds the record and the
gateway cannot use it), no gateway stranded, and the marker never over credentials that are
missing, empty or incomplete. The recording needs a file system with the synchronous-update
attributes (ext4, as on gateways), which the agent sets on the folder FCC stores in.

By default (`make test`) a fixed, seeded sample runs: two of the six recordings, four states
each (one per model). PEP_CRASH_FULL=1 (`make crashtest`) runs every recording and every
state, or PEP_CRASH_SAMPLE states of each when that is set; PEP_CRASH_SEED replays another
sample. Needs strace.
"""

from __future__ import annotations

import os
import random
import shutil
import sys
from pathlib import Path

import pytest

from tests.crash import explore

SEED = int(os.environ.get("PEP_CRASH_SEED", "14"))
FULL = os.environ.get("PEP_CRASH_FULL") == "1"
SAMPLE = int(os.environ.get("PEP_CRASH_SAMPLE", "0" if FULL else "4"))
SAMPLED_RECORDINGS = 2

pytestmark = pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace")

CASES = [(s, m) for s in explore.SCENARIOS for m in explore.FCC_MODES]
RUN = CASES if FULL else random.Random(SEED).sample(CASES, SAMPLED_RECORDINGS)


@pytest.mark.timeout(0 if FULL else 120)
@pytest.mark.parametrize(("scenario", "fcc_mode"), CASES, ids=[f"{s}-{m}" for s, m in CASES])
def test_every_crash_state_reruns_to_a_clean_end(tmp_path: Path, scenario: str,
                                                 fcc_mode: str) -> None:
    if (scenario, fcc_mode) not in RUN:
        pytest.skip(f"not in this sample (PEP_CRASH_SEED={SEED}; PEP_CRASH_FULL=1 runs all)")
    if not explore.sync_attributes_supported(tmp_path):
        pytest.skip("the temporary folder's file system has no synchronous-update attributes "
                    "(tmpfs?): record on ext4, as gateways store on")
    rec = explore.record(explore.Scenario(scenario, fcc_mode), tmp_path / "record")
    states = list(explore.distinct_states(rec).values())
    assert states, "no crash state was built"
    # Both ends of the recording are states too: the run must be judged where it started
    # and where it finished, whatever the sample.
    assert any(s.point == len(rec.ops) for s in states)
    chosen = explore.sample(states, SAMPLE, SEED) if SAMPLE else states
    print(f"\n{len(rec.ops)} operations, {len(states)} distinct crash states; running "
          f"{f'a sample of {len(chosen)} (PEP_CRASH_SEED={SEED})' if SAMPLE else 'all'}",
          file=sys.stderr)
    verdicts = explore.explore(rec, chosen, tmp_path / "states")
    explore.print_report(rec, verdicts)
    bad = [v.describe(rec) for v in verdicts if v.outcome not in explore.ACCEPTED]
    assert not bad, (explore.summary("crash states", verdicts) + "\n" + "\n".join(bad[:10]))
