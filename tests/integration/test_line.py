"""A production line: 15 gateways boot together while the pep server is still down.

Every gateway must end provisioned with its own enrollment id, no serial may be asked for
twice, and the retries must not march in lockstep (full jitter). The spread is printed for
`pytest -s`; the assertions only use properties that removing the jitter would break.
"""

from __future__ import annotations

import datetime
import functools
import json
import re
import statistics
from collections import defaultdict
from pathlib import Path

import pytest

from tests.agentprocs import agent_env, free_port
from tests.endstate import (
    IDENTITY,
    Background,
    assert_no_wasted_identity,
    end_state,
    fcc_process,
    has_retried,
    identity_requests,
    identity_statuses,
    journal,
    provision_argv,
    start_agent,
    wait_until,
)
from tests.simprocs import SimServer, fcc_command, start_server

GATEWAYS = 15
RETRY = re.compile(r"request-identity: attempt (\d+) failed .*; next try in ([0-9.]+) s")


def _when(entry: dict[str, str]) -> datetime.datetime:
    return datetime.datetime.fromisoformat(entry["time"].replace("Z", "+00:00"))


def _retry_delays(stderr: str) -> dict[int, float]:
    """Attempt number → the delay the agent drew after that failed attempt."""
    return {int(m.group(1)): float(m.group(2)) for m in RETRY.finditer(stderr)}


def _summary(values: list[float]) -> str:
    if not values:
        return "none"
    spread = statistics.pstdev(values) if len(values) > 1 else 0.0
    return (f"n={len(values)} min={min(values):.2f} max={max(values):.2f} "
            f"mean={statistics.mean(values):.2f} stdev={spread:.2f}")


@pytest.mark.timeout(300)
def test_line_of_gateways_against_a_server_that_comes_up_late(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = agent_env(PEP_SERVER_DEADLINE="150", PEP_RETRY_BASE="0.5", PEP_RETRY_CAP="4",
                    PEP_HTTP_TIMEOUT="60", PEP_FCC_EXIT_TIMEOUT="60")
    serials = [f"LINE-1 GW-{n:02d}" for n in range(GATEWAYS)]
    roots = {s: tmp_path / f"gw{n:02d}" for n, s in enumerate(serials)}
    agents: dict[str, Background] = {}
    srv: SimServer | None = None
    try:
        for n, serial in enumerate(serials):
            agents[serial] = start_agent(provision_argv(roots[serial], url, serial,
                                                        fcc_command()),
                                         tmp_path / f"logs{n:02d}", env)
        # The server comes up only once every gateway has been refused twice.
        for serial in serials:
            wait_until(f"{serial} retries", functools.partial(has_retried, roots[serial], 2),
                       120, alive=agents[serial])
        srv = start_server(tmp_path / "server", port=port)
        codes = {s: agents[s].wait(150) for s in serials}
        failed = {s: agents[s].err()[-600:] for s, c in codes.items() if c != 0}
        assert not failed, f"gateways that did not provision: {failed}"

        # Every gateway provisioned with its own identity; one identity request each.
        eids = []
        for serial in serials:
            assert end_state(roots[serial], srv, serial) == "provisioned"
            assert_no_wasted_identity(srv, {serial: roots[serial]})
            eids.append(json.loads((roots[serial] / IDENTITY).read_text())["enrollmentID"])
            assert fcc_process(journal(roots[serial])) is None
        assert len(set(eids)) == GATEWAYS, "duplicate enrollment ids"
        requests_seen = identity_requests(srv)
        assert len(requests_seen) == GATEWAYS
        assert identity_statuses(srv) == [200] * GATEWAYS, "a gateway got something but 200"

        # The spread, for the record.
        delays: dict[int, list[float]] = defaultdict(list)
        for serial in serials:
            for attempt, delay in _retry_delays(agents[serial].err()).items():
                delays[attempt].append(delay)
        times = sorted(_when(e) for e in requests_seen)
        offsets = [(t - times[0]).total_seconds() for t in times]
        attempts = [int(journal(roots[s])["attempt"]) for s in serials]
        print(f"\n{GATEWAYS} gateways, server up after every one was refused twice")
        print(f"  successful identity requests, s after the first: {_summary(offsets)}")
        print(f"  attempts per gateway: {sorted(attempts)}")
        for attempt in sorted(delays):
            print(f"  delay after failed attempt {attempt}: {_summary(delays[attempt])}")
        all_delays = [d for ds in delays.values() for d in ds]
        print(f"  all retry delays: {_summary(all_delays)}")

        # Full jitter: gateways that failed the same attempt drew different delays. Without
        # jitter every gateway waits exactly the backoff ceiling and these sets collapse.
        for attempt, ceiling in ((1, 0.5), (2, 1.0)):
            drawn = delays[attempt]
            assert len(drawn) == GATEWAYS, f"every gateway failed attempt {attempt}"
            assert len(set(drawn)) > 1, f"identical delays after attempt {attempt}: {drawn}"
            assert max(drawn) <= ceiling, f"delays above the backoff ceiling: {drawn}"
        assert len(set(offsets)) > 1
    finally:
        for agent in agents.values():
            agent.kill()
        if srv is not None:
            srv.stop()
