"""Commands that change the gateway refuse to start as non-root without a sandbox root:
exit 3 with a hint, before the context (state directory, journal, LED) is built."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

import pep_agent.cli.provisioning as commands
from pep_agent import flow
from pep_agent.cli.app import app
from pep_agent.exit_codes import Exit


class Reached(Exception):
    """Raised where the command would start to act on the gateway."""


# Where a command got to: the CLI wrapper turns the exception into exit 1, as for any bug.
REACHED: list[str] = []


@pytest.fixture
def not_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    monkeypatch.delenv("PEP_ROOT", raising=False)
    REACHED.clear()

    def reached(*args: object, **kwargs: object) -> None:
        REACHED.append("acting")
        raise Reached

    # The first thing after the root check: logging set-up (kept out of this process's
    # handlers), then the context.
    monkeypatch.setattr(commands, "setup_logs", reached)
    monkeypatch.setattr(flow, "build_context", reached)
    monkeypatch.setattr(commands, "verify_connection", reached)
    monkeypatch.setattr(flow, "make_led_for", reached)


@pytest.mark.parametrize("argv", [["provision"], ["reprovision", "--yes"], ["verify"],
                                  ["led", "success"], ["provision", "--root", "/"]])
def test_non_root_on_the_gateway_is_exit_3(not_root: None, argv: list[str]) -> None:
    result = CliRunner().invoke(app, argv)
    assert REACHED == []
    assert result.exit_code == Exit.CONFIG, result.output
    assert f"pep-agent {argv[0]} must run as root" in result.output
    assert "sudo" in result.output and "--root DIR" in result.output


def test_non_root_in_a_sandbox_goes_on(not_root: None, tmp_path: Path) -> None:
    CliRunner().invoke(app, ["provision", "--root", str(tmp_path)])
    assert REACHED == ["acting"]
    assert list(tmp_path.iterdir()) == []
