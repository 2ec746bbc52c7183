"""Fixtures for integration tests: simulator processes on loopback, stopped after each test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.simprocs import SimFcc, SimServer, start_fcc, start_server


@pytest.fixture
def server(tmp_path: Path) -> Iterator[SimServer]:
    """A pep server simulator of this test's own on 127.0.0.1, its records under tmp_path:
    the tests set its fault knobs and count its requests."""
    srv = start_server(tmp_path / "server")
    yield srv
    srv.stop()


@pytest.fixture
def sim_fcc(tmp_path: Path) -> Iterator[Callable[..., SimFcc]]:
    """Starts FCC stand-ins (start_fcc's options; cwd defaults to tmp_path/fcc-N)."""
    started: list[SimFcc] = []

    def start(cwd: Path | None = None, **options: Any) -> SimFcc:
        fcc = start_fcc(cwd or tmp_path / f"fcc-{len(started)}", **options)
        started.append(fcc)
        return fcc

    yield start
    for fcc in started:
        fcc.stop(grace=2.0)
