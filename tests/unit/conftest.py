"""Unit tests start no process unless they ask for it: a test that needs a real one (FCC's
stand-in, openssl, the agent's own command line) says so with `@pytest.mark.spawns`; any other
that starts one fails, naming what it tried to run.

Side effects: while an unmarked test runs, the process-starting functions of subprocess and os
raise instead.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

# Every way Python starts or replaces a process: subprocess (and with it os.popen) ends in
# Popen._execute_child; the rest are os's own.
_OS_SPAWNERS = ("fork", "forkpty", "system", "posix_spawn", "posix_spawnp",
                "execv", "execve", "execvp", "execvpe", "execl", "execle", "execlp", "execlpe",
                "spawnv", "spawnve", "spawnvp", "spawnvpe", "spawnl", "spawnle", "spawnlp",
                "spawnlpe")


def _refuse(name: str, refused: list[str]) -> Any:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        what = args[1] if name == "Popen" and len(args) > 1 else args[:1]
        refused.append(f"{name}: {what!r}")
        raise AssertionError(f"a unit test started a process ({refused[-1]}); mark it "
                             "@pytest.mark.spawns if it needs one")

    return refuse


@pytest.fixture(autouse=True)
def no_processes(request: pytest.FixtureRequest,
                 monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    if request.node.get_closest_marker("spawns") is not None:
        yield
        return
    refused: list[str] = []
    monkeypatch.setattr(subprocess.Popen, "_execute_child", _refuse("Popen", refused))
    for name in _OS_SPAWNERS:
        if hasattr(os, name):
            monkeypatch.setattr(os, name, _refuse(name, refused))
    yield
    # Also when the code under test caught the error (a failing LED command is a warning).
    if refused:
        pytest.fail(f"a unit test started a process ({refused[0]}); mark it "
                    "@pytest.mark.spawns if it needs one", pytrace=False)
