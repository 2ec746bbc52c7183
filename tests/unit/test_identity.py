import stat
from pathlib import Path

import pytest

from pep_agent.errors import BadResponseError
from pep_agent.flow.request import backoff_ceiling
from pep_agent.gateway.identity import (
    check_response,
    load_response,
    save_response,
)
from pep_agent.settings.identity_query import identity_query


def test_backoff_grows_to_the_cap() -> None:
    assert [backoff_ceiling(n, 0.5, 5) for n in range(1, 7)] == [0.5, 1, 2, 4, 5, 5]
    assert backoff_ceiling(500, 1, 30) == 30


def test_response_checks() -> None:
    assert check_response({"serialNumber": "A", "enrollmentID": "A-00"}, "A") == "A-00"
    with pytest.raises(BadResponseError, match="no serialNumber"):
        check_response({"enrollmentID": "x"}, "A")
    with pytest.raises(BadResponseError, match="not 'A'"):
        check_response({"serialNumber": "B", "enrollmentID": "x"}, "A")
    with pytest.raises(BadResponseError, match="no enrollmentID"):
        check_response({"serialNumber": "A", "enrollmentID": ""}, "A")


def test_saved_response_is_private_and_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "state/response.json"
    save_response(path, {"serialNumber": "A", "enrollmentID": "x"})
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_response(path) == {"serialNumber": "A", "enrollmentID": "x"}
    assert load_response(tmp_path / "absent.json") is None
    path.write_text("{torn")
    with pytest.raises(BadResponseError):
        load_response(path)


def test_rebuilt_answer_matches_what_the_server_sends() -> None:
    from pep_agent.gateway.identity import rebuild_identity
    from pep_agent.settings.config import Settings

    query = identity_query(Settings(), "SN-1", "10.0.0.2", 4000, "secret-vk")
    data = rebuild_identity(query, "A-00", 1700000000.5)
    assert data["serialNumber"] == "SN-1" and data["enrollmentID"] == "A-00"
    assert data["cloudAddress"] == data["gatewayServicesAddress"]
    assert data["deployed"] is True and data["createdAt"] == 1700000000500
    assert "verificationKey" not in data and "ip" not in data and "port" not in data
    assert check_response(data, "SN-1") == "A-00"
