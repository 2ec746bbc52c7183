"""Fixtures every test directory shares: a seeded random generator."""

from __future__ import annotations

import os
import random

import pytest

SEED_VARIABLE = "PEP_TEST_SEED"


@pytest.fixture
def rng(request: pytest.FixtureRequest) -> random.Random:
    """A random generator seeded from PEP_TEST_SEED, else from a fresh seed; the seed is
    printed (pytest shows it with the output of a failed test) so that a run can be replayed."""
    given = os.environ.get(SEED_VARIABLE)
    seed = int(given) if given else random.SystemRandom().randrange(1 << 30)
    print(f"\n{request.node.nodeid}: seed {seed} ({SEED_VARIABLE}={seed} replays it)")
    return random.Random(seed)
