"""What every test directory shares: one seed for everything random in a run.

The seed is PEP_TEST_SEED when set, else a fresh one; it is shown in the run's header and by
each `rng` user, and PEP_TEST_SEED=<seed> replays the run: the `rng` fixture's generators and
the property tests' examples (hypothesis) alike. The first process sets the variable, so
parallel workers share the seed.

The `loopback` fixture starts the tests' hand-made servers (tests/loopback.py).
"""

from __future__ import annotations

import os
import random
import signal
import socketserver
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.agentprocs import release_ports
from tests.loopback import LoopbackServer

SEED_VARIABLE = "PEP_TEST_SEED"


def _seed() -> int:
    return int(os.environ[SEED_VARIABLE])


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    # A run started in the background by a shell without job control (`cmd &` in a script,
    # nohup) ignores SIGINT and SIGQUIT, and every program a test starts would inherit that: the
    # real FCC would then outlive the SIGINT the comparison sends it. The tests' programs start
    # with the default actions, as the agent's do (it handles both signals itself).
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if signal.getsignal(signal.SIGQUIT) == signal.SIG_IGN:
        signal.signal(signal.SIGQUIT, signal.SIG_DFL)
    if not os.environ.get(SEED_VARIABLE):
        os.environ[SEED_VARIABLE] = str(random.SystemRandom().randrange(1 << 30))
    # Before hypothesis's own plugin reads its option: the same seed drives its examples.
    if getattr(config.option, "hypothesis_seed", "absent") is None:
        config.option.hypothesis_seed = _seed()


def pytest_report_header(config: pytest.Config) -> str:
    return f"random seed {_seed()} ({SEED_VARIABLE}={_seed()} replays this run)"


@pytest.fixture
def rng(request: pytest.FixtureRequest) -> random.Random:
    """A random generator for this test, from the run's seed (printed with the test's output,
    which pytest shows when it fails)."""
    seed = _seed()
    print(f"\n{request.node.nodeid}: seed {seed} ({SEED_VARIABLE}={seed} replays it)")
    return random.Random(f"{seed}:{request.node.nodeid}")


@pytest.fixture(autouse=True)
def _held_ports() -> Iterator[None]:
    """The ports free_port() held for a test are let go after it."""
    yield
    release_ports()


@pytest.fixture
def loopback() -> Iterator[Callable[..., LoopbackServer]]:
    """Starts loopback servers (LoopbackServer's arguments; `kind`, a subclass of it with
    state of its own); every one stops after the test."""
    started: list[LoopbackServer] = []

    def start(handler: type[socketserver.BaseRequestHandler], *,
              kind: type[LoopbackServer] = LoopbackServer, **options: Any) -> Any:
        started.append(kind(handler, **options))
        return started[-1]

    yield start
    for server in started:
        server.stop()
