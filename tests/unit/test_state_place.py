"""Where the state lives: on the identity's partition per profile, moved by PEP_STATE_DIR,
with the state of earlier versions in /var/lib/pep-agent still honoured; chosen once."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pep_agent import flow
from pep_agent.errors import ConfigError, PepError
from pep_agent.exit_codes import Exit
from pep_agent.flow import runner
from pep_agent.settings.config import load_settings
from pep_agent.settings.paths import Paths
from tests.fakes import ScriptedClient, make_context


@pytest.mark.parametrize("profile,place", [
    ("lmp", "userdata/pep-agent"), ("meta-pelion-edge", "userdata/pep-agent"),
    ("snap", "var/snap/pelion-edge/current/userdata/pep-agent"),
    ("debian", "var/lib/pelion/pep-agent")])
def test_state_lives_beside_the_identity(tmp_path: Path, profile: str, place: str) -> None:
    settings = load_settings({"root": tmp_path, "profile": profile}, {})
    assert settings.paths.state_dir == tmp_path / place
    assert settings.paths.provisioned_marker.parent == tmp_path / place


def test_a_setting_moves_it(tmp_path: Path) -> None:
    settings = load_settings({"root": tmp_path}, {"PEP_STATE_DIR": "/data/pep"})
    assert settings.paths.journal == tmp_path / "data/pep/state.json"
    with pytest.raises(ConfigError, match="PEP_STATE_DIR"):
        load_settings({"root": tmp_path}, {"PEP_STATE_DIR": "relative/pep"})


def test_a_gateway_provisioned_by_an_earlier_version_stays_provisioned(tmp_path: Path) -> None:
    legacy = tmp_path / "var/lib/pep-agent"
    legacy.mkdir(parents=True)
    (legacy / "provisioned").write_text("SN-1\n")
    ctx, _ = make_context(tmp_path, ScriptedClient())
    assert ctx.paths.state_dir == legacy
    assert runner.plan(ctx).start is None
    # status, without the settings, finds it too
    assert Paths(tmp_path).provisioned_marker == legacy / "provisioned"


def test_an_unwritable_state_directory_is_named_with_its_setting(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        # Root ignores permissions: a file where the directory should be fails for anyone.
        (tmp_path / "userdata").mkdir()
        (tmp_path / "userdata/pep-agent").write_text("not a directory")
    else:
        (tmp_path / "userdata").mkdir(mode=0o500)
    ctx, _ = make_context(tmp_path, ScriptedClient())
    with pytest.raises(PepError) as raised:
        flow.provision(ctx)
    assert raised.value.code == Exit.STATE
    assert str(tmp_path / "userdata/pep-agent") in raised.value.message
    assert "PEP_STATE_DIR" in raised.value.hint


def test_the_place_is_chosen_once(tmp_path: Path) -> None:
    """State that appears elsewhere during a run does not move the run's state directory."""
    settings = load_settings({"root": tmp_path}, {})
    chosen = settings.paths.state_dir
    assert chosen == tmp_path / "userdata/pep-agent"
    legacy = tmp_path / "var/lib/pep-agent"
    legacy.mkdir(parents=True)
    (legacy / "state.json").write_text("{}")
    assert settings.paths.state_dir == chosen and settings.paths.journal.parent == chosen
    assert Paths(tmp_path, profile_state="/userdata/pep-agent").state_dir == legacy


def test_a_reader_without_profile_sees_a_run_appear(tmp_path: Path) -> None:
    """status --wait builds its Paths before a snap gateway's run writes its journal."""
    paths = Paths(tmp_path)
    assert paths.state_dir == tmp_path / "userdata/pep-agent"
    snap = tmp_path / "var/snap/pelion-edge/current/userdata/pep-agent"
    snap.mkdir(parents=True)
    (snap / "state.json").write_text("{}")
    assert paths.state_dir == snap
