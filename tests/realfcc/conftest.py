"""The comparison's summary: "comparison: N alike of M probes", printed at the end of the run
(in the terminal summary, so it shows whatever pytest captures, also with parallel workers:
each probe records its result as a property of its report), and every probe that was run
again because a side gave no answer at all."""

from __future__ import annotations

import pytest


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    results = []
    hung = []
    for reports in terminalreporter.stats.values():
        for report in reports:
            if getattr(report, "when", None) != "call":
                continue
            properties = dict(getattr(report, "user_properties", ()))
            result = properties.get("comparison")
            if result is not None:
                results.append(result)
            if "hung" in properties:
                hung.append(f"{report.nodeid}: {properties['hung']}")
    if results:
        alike = results.count("alike")
        terminalreporter.write_line(f"comparison: {alike} alike of {len(results)} probes")
    for line in hung:
        terminalreporter.write_line(f"comparison: a side gave no answer, run again: {line}")
