"""Fault knobs of the simulated server: validation and counters."""

from __future__ import annotations

from typing import Any

import pytest

# The factory tool signs certificates with the 'sim' extra.
pytest.importorskip("cryptography")

from pep_agent.sim.faults import Faults
from pep_agent.system.logs import redact


def test_defaults_and_start_values() -> None:
    faults = Faults(fail_next=2, delay=1)
    snap = faults.snapshot()
    assert snap == {"fail_next": 2, "fail_status": 503, "delay": 1.0, "answer_delay": 0.0,
                    "drop_next": 0,
                    "drop_after_next": 0, "fail_injection_next": 0, "fcc_timeout": 30.0,
                    "deploy_delay": 0.0}
    assert isinstance(snap["delay"], float)


def test_counters_run_down_and_stop_at_zero() -> None:
    faults = Faults(drop_next=2)
    assert [faults.take("drop_next") for _ in range(4)] == [True, True, False, False]
    assert faults.get("drop_next") == 0


@pytest.mark.parametrize("changes", [
    {"nope": 1}, {"fail_next": -1}, {"fail_next": 2.5}, {"fail_next": True},
    {"fail_status": 99}, {"fail_status": 600}, {"delay": "1"}, {"fcc_timeout": 0},
])
def test_bad_changes_are_refused_whole(changes: dict[str, Any]) -> None:
    faults = Faults()
    before = faults.snapshot()
    with pytest.raises(ValueError):
        faults.update({"drop_next": 3, **changes})
    assert faults.snapshot() == before


def test_integral_floats_are_fine_for_counters() -> None:
    assert Faults().update({"fail_next": 2.0})["fail_next"] == 2


def test_verification_keys_are_masked_in_urls() -> None:
    line = '"GET /v3/identity?serialNumber=A&verificationKey=s3cr3t&ip=1 HTTP/1.1" 200'
    assert "s3cr3t" not in redact(line)
    assert "serialNumber=A" in redact(line) and "ip=1" in redact(line)
    assert "s3cr3t" not in redact("/v3/identity?VERIFICATIONKEY=s3cr3t")


def test_drop_after_next_is_a_bounded_counter() -> None:
    faults = Faults(drop_after_next=1)
    assert faults.snapshot()["drop_after_next"] == 1
    assert [faults.take("drop_after_next") for _ in range(3)] == [True, False, False]
    with pytest.raises(ValueError):
        faults.update({"drop_after_next": -1})
    with pytest.raises(ValueError):
        faults.update({"drop_after_next": 0.5})
