"""The profiles own their facts, and the systemd units agree with them: the provisioning unit
runs only where no state place holds a marker, the verify unit where one holds a marker and
none a verified one."""

from __future__ import annotations

from pathlib import Path

import pytest

from pep_agent.settings.paths import LEGACY_STATE_DIR, Paths
from pep_agent.settings.profiles import PROFILES, Profile

UNITS = Path(__file__).resolve().parents[2] / "systemd"


def state_places(profiles: dict[str, Profile]) -> list[str]:
    """Every place a run's state may be in: each profile's, then the earlier versions'."""
    return list(dict.fromkeys([*(p.state_dir for p in profiles.values()), LEGACY_STATE_DIR]))


def marker(place: str, name: str) -> str:
    paths = Paths(Path("/"), state_setting=place)
    return str({"provisioned": paths.provisioned_marker, "verified": paths.verified_marker}[name])


def expected_conditions(unit: str, profiles: dict[str, Profile]) -> set[str]:
    places = state_places(profiles)
    if unit == "pep-agent.service":
        return {f"!{marker(p, 'provisioned')}" for p in places}
    return ({f"|{marker(p, 'provisioned')}" for p in places}
            | {f"!{marker(p, 'verified')}" for p in places})


def conditions(text: str) -> list[str]:
    """The values of the unit's ConditionPathExists= lines."""
    return [line.split("=", 1)[1].strip() for line in text.splitlines()
            if line.startswith("ConditionPathExists=")]


@pytest.mark.parametrize("unit", ["pep-agent.service", "pep-agent-verify.service"])
def test_the_units_marker_conditions_follow_the_profiles(unit: str) -> None:
    found = conditions((UNITS / unit).read_text())
    assert len(found) == len(set(found)), f"{unit} repeats a condition"
    assert set(found) == expected_conditions(unit, PROFILES)


def test_a_profile_with_a_state_place_of_its_own_needs_its_condition() -> None:
    """The check above fails when the profiles and the unit disagree."""
    text = (UNITS / "pep-agent.service").read_text()
    moved = {**PROFILES, "other": Profile(**{**vars(PROFILES["lmp"]), "name": "other",
                                            "state_dir": "/data/pep-agent"})}
    missing = expected_conditions("pep-agent.service", moved) - set(conditions(text))
    assert missing == {"!/data/pep-agent/provisioned"}
    dropped = text.replace("ConditionPathExists=!/var/lib/pelion/pep-agent/provisioned\n", "")
    assert set(conditions(dropped)) != expected_conditions("pep-agent.service", PROFILES)

