"""reap_leftover against real processes: FCC behind a wrapper that does not `exec`."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from pep_agent.system import proc

# Every test here runs real processes.
pytestmark = pytest.mark.spawns

# The wrapper keeps running while its child (standing in for FCC) runs: no `exec`.
WRAPPER = """#!/bin/sh
{child}
status=$?
echo "fcc exited with $status"
exit $status
"""
# The child records its pid, then sleeps (bounded, should a test leak it).
CHILD = "sh -c '{trap}echo $$ > {pidfile}; exec sleep 120'"


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.fixture(params=[False], ids=["plain"])
def leftover(tmp_path: Path,
             request: pytest.FixtureRequest) -> Iterator[tuple[proc.Child, int, Path]]:
    """Start wrapper + child as the agent starts FCC; yield (wrapper, child pid, pidfile).

    With the parameter True, the child ignores SIGTERM.
    """
    pidfile = tmp_path / "child.pid"
    script = tmp_path / "fcc-wrapper"
    trap = "trap \"\" TERM; " if request.param else ""
    script.write_text(WRAPPER.format(child=CHILD.format(trap=trap, pidfile=pidfile)))
    script.chmod(0o755)
    wrapper = proc.spawn([str(script)])
    child_pid = 0
    for _ in range(200):  # bounded: up to ~10 s for the child to write its pid
        text = pidfile.read_text() if pidfile.exists() else ""
        if text.endswith("\n"):
            child_pid = int(text)
            break
        time.sleep(0.05)
    assert child_pid, "the child never started"
    try:
        yield wrapper, child_pid, pidfile
    finally:
        proc.stop(wrapper, grace=1)
        if not gone(child_pid):
            os.kill(child_pid, 9)


def test_the_child_behind_a_wrapper_is_ended_with_it(
        leftover: tuple[proc.Child, int, Path]) -> None:
    wrapper, child_pid, _ = leftover
    assert not gone(child_pid) and psutil.Process(child_pid).ppid() == wrapper.pid
    started = proc.process_start_time(wrapper.pid)

    assert proc.reap_leftover(wrapper.pid, started, grace=5) is True

    assert wrapper.wait(timeout=10) is not None
    assert gone(child_pid), "FCC survived its wrapper"


@pytest.mark.parametrize("leftover", [True], ids=["ignores-sigterm"], indirect=True)
def test_a_child_ignoring_sigterm_gets_sigkill(leftover: tuple[proc.Child, int, Path]) -> None:
    wrapper, child_pid, _ = leftover
    assert proc.reap_leftover(wrapper.pid, proc.process_start_time(wrapper.pid), grace=0.5)
    assert wrapper.wait(timeout=10) is not None
    assert gone(child_pid)


def test_a_reused_pid_is_never_signalled(leftover: tuple[proc.Child, int, Path]) -> None:
    wrapper, child_pid, _ = leftover
    started = proc.process_start_time(wrapper.pid)
    assert started is not None

    # The journal recorded a process that started earlier: this pid is somebody else's now.
    assert proc.reap_leftover(wrapper.pid, started - 10, grace=0.5) is False

    assert wrapper.poll() is None and not gone(child_pid)
