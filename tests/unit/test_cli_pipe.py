"""A closed output pipe ends a command quietly (141); a broken pipe anywhere else is a bug."""

from __future__ import annotations

import contextlib
import logging
import os
import sys

import pytest
import typer

from pep_agent.cli.app import handles_errors
from pep_agent.exit_codes import Exit


def test_a_broken_socket_is_still_a_bug(capsys: pytest.CaptureFixture[str],
                                        caplog: pytest.LogCaptureFixture) -> None:
    @handles_errors
    def command() -> None:
        raise BrokenPipeError(32, "Broken pipe")  # a socket's: the output is fine

    with caplog.at_level(logging.ERROR), pytest.raises(typer.Exit) as ended:
        command()
    assert ended.value.exit_code == int(Exit.INTERNAL)
    assert "report the traceback" in capsys.readouterr().err
    assert any(r.exc_info for r in caplog.records if r.levelno == logging.ERROR)


def test_output_to_a_reader_that_went_away_is_141(monkeypatch: pytest.MonkeyPatch) -> None:
    read, write = os.pipe()
    os.close(read)  # `| head -1` has read what it wanted
    stream = os.fdopen(write, "w")
    monkeypatch.setattr(sys, "stdout", stream)

    @handles_errors
    def command() -> None:
        print("state: provisioned")

    try:
        with pytest.raises(typer.Exit) as ended:
            command()
    finally:
        with contextlib.suppress(OSError):
            stream.close()  # its descriptor now writes to /dev/null
    assert ended.value.exit_code == int(Exit.SIGPIPE) == 128 + 13
