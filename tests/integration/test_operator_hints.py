"""What a technician reads on real processes: a closed output pipe, misspelled settings, a wrong
server path, and hints that name the right source and the right cause."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.agentprocs import AGENT, agent_env
from tests.simprocs import SimServer, start_server


@pytest.fixture
def server(tmp_path: Path) -> Iterator[SimServer]:
    srv = start_server(tmp_path / "server")
    yield srv
    srv.stop()


@pytest.mark.parametrize("more", [(), ("--json",)])
def test_status_into_a_closed_pipe_ends_quietly(tmp_path: Path, more: tuple[str, ...]) -> None:
    """`pep-agent status | head -1`: the reader is gone before the output is written. A Unix
    filter ends quietly, as SIGPIPE ends it: 128 + 13, nothing on stderr."""
    read, write = os.pipe()
    os.close(read)  # the reader went away: every write fails with EPIPE
    try:
        out = subprocess.run([*AGENT, "status", "--root", str(tmp_path), *more], stdout=write,
                             stderr=subprocess.PIPE, text=True, env=agent_env(), timeout=60,
                             stdin=subprocess.DEVNULL, check=False)
    finally:
        os.close(write)
    assert out.stderr == ""
    assert out.returncode == 141

