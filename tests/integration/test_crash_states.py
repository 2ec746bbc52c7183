"""Issue 14's crash-state explorer: every on-disk state a power cut could leave during a
provision, under four persistence models, each followed by a plain rerun of the agent.

The provision is recorded under strace (tests/crash/explore.py), the states are built from
its durable-state operations (tests/crash/fsmodel.py), and each is judged: no identity the
server holds may be lost, no gateway stranded, and the marker never over credentials that are
missing, empty or incomplete. By default a fixed, seeded sample of the states runs; set
PEP_CRASH_FULL=1 for all of them (`make crashtest`), PEP_CRASH_SEED to replay another sample,
PEP_CRASH_SAMPLE for its size per recording. Needs strace.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

from tests.crash import explore

SEED = int(os.environ.get("PEP_CRASH_SEED", "14"))
SAMPLE = int(os.environ.get("PEP_CRASH_SAMPLE", "3"))
FULL = os.environ.get("PEP_CRASH_FULL") == "1"

pytestmark = pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace")

CASES = [(s, m) for s in explore.SCENARIOS for m in explore.FCC_MODES]


@pytest.mark.timeout(0 if FULL else 120)
@pytest.mark.parametrize(("scenario", "fcc_mode"), CASES, ids=[f"{s}-{m}" for s, m in CASES])
def test_every_crash_state_reruns_to_a_clean_end(tmp_path: Path, scenario: str,
                                                 fcc_mode: str) -> None:
    rec = explore.record(explore.Scenario(scenario, fcc_mode), tmp_path / "record")
    states = list(explore.distinct_states(rec).values())
    assert states, "no crash state was built"
    # Both ends of the recording are states too: the run must be judged where it started
    # and where it finished, whatever the sample.
    assert any(s.point == len(rec.ops) for s in states)
    chosen = states if FULL else explore.sample(states, SAMPLE, SEED)
    print(f"\n{len(rec.ops)} operations, {len(states)} distinct crash states; "
          f"running {'all' if FULL else f'a sample of {len(chosen)} (PEP_CRASH_SEED={SEED})'}",
          file=sys.stderr)
    verdicts = explore.explore(rec, chosen, tmp_path / "states")
    explore.print_report(rec, verdicts)
    bad = [v.describe(rec) for v in verdicts
           if v.outcome not in ("provisioned", "clean unprovisioned")]
    assert not bad, (explore.summary("crash states", verdicts) + "\n" + "\n".join(bad[:10]))
