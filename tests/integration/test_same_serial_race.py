"""Two gateways with one serial, started together against the simulated pep server, whose
records stay undeployed for a while after each injection (as a slow injection leaves them).
One wins; the loser meets a record that answers 404 while the winner is still being injected.
It must not be told to delete anything: it watches the record until it is deployed, and is told
that its serial is a duplicate. Following its hint never leaves two gateways with one record.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.agentprocs import agent_env
from tests.endstate import (
    assert_no_wasted_identity,
    end_state,
    provision_argv,
    start_agent,
)
from tests.simprocs import fcc_command, start_server

SERIAL = "GW-TWIN"


@pytest.mark.timeout(300)
def test_the_loser_of_a_same_serial_race_is_not_told_to_delete_the_winner(
        tmp_path: Path) -> None:
    server = start_server(tmp_path / "server", deploy_delay=3.0)
    try:
        env = agent_env(PEP_HTTP_TIMEOUT="30")
        roots = [tmp_path / "a", tmp_path / "b"]
        agents = [start_agent(provision_argv(root, server.url, SERIAL, fcc_command()),
                              tmp_path / f"logs-{root.name}", env) for root in roots]
        codes = [agent.wait(240) for agent in agents]
        assert sorted(codes) == [0, 15], [a.err() for a in agents]
        winner, loser = (0, 1) if codes[0] == 0 else (1, 0)
        said = agents[loser].err()
        assert "deployed record for serial GW-TWIN" in said, said
        assert "remove the record" not in said, said
        assert "no gateway holds" not in said, said
        assert end_state(roots[winner], server, SERIAL) == "provisioned"
        # The loser holds nothing of the winner's identity, and nothing staged.
        assert end_state(roots[loser], server, SERIAL) == "not-provisioned"
        assert_no_wasted_identity(server, {SERIAL: roots[winner]})
        # The loser's hint: give it its own serial. Doing so provisions it as that serial.
        again = start_agent(provision_argv(roots[loser], server.url, "GW-TWIN-2",
                                           fcc_command()), tmp_path / "logs-again", env)
        assert again.wait(120) == 0, again.err()
        assert end_state(roots[winner], server, SERIAL) == "provisioned"
        assert end_state(roots[loser], server, "GW-TWIN-2") == "provisioned"
    finally:
        server.stop()
