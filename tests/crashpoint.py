"""The agent's command line with a crash point wired into its context, for the crash tests:
the run ends exactly where a power cut or a kill would end it, and the product reads nothing
to allow it.

    python -m tests.crashpoint STEP:WHEN SIGNAL pep-agent-arguments...

STEP:WHEN is a step name and `before` or `after` it, or `request-identity:answered` (the
server's 200 is in, not yet saved); SIGNAL is KILL (a power cut) or TERM (a factory script's
kill). Side effects: those of the command, then the signal to this process at that point.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable

from pep_agent import flow
from pep_agent.cli import main
from pep_agent.settings.config import Settings


def crash_at(point: str, signum: int) -> Callable[[str, str], None]:
    """A context's crash hook that sends `signum` to this process at `point`."""

    def hook(step: str, when: str) -> None:
        if f"{step}:{when}" == point:
            os.kill(os.getpid(), signum)

    return hook


def run(argv: list[str]) -> None:
    point, name, *command = argv
    signum = signal.Signals[f"SIG{name}"]
    real = flow.build_context

    def build_context(settings: Settings) -> flow.Context:
        ctx = real(settings)
        ctx.crash_at = crash_at(point, signum)
        return ctx

    # The command line builds its context through the package's build_context.
    flow.build_context = build_context
    sys.argv = ["pep-agent", *command]
    main()


if __name__ == "__main__":
    run(sys.argv[1:])
