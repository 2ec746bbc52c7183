"""The README's places of the agent's own state (journal, lock, markers, the sandbox's service
log) are each profile's, generated from pep_agent/settings/profiles.py (test_profiles.py checks the
units' conditions)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

from pep_agent.settings.profiles import PROFILES

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
# A file of the state directory written as a path: <dir>/pep-agent/<file>.
_STATE_FILE = re.compile(r"(/[\w.-]+(?:/[\w.-]+)*?/pep-agent)/(lock|state\.json|provisioned|"
                         r"verified|response\.json|sandbox-services\.log)\b")

needs_readme = pytest.mark.skipif(
    not README.is_file(),
    reason="an installed copy (the ptest): the README is in the source tree only")


def _script() -> object:
    spec = importlib.util.spec_from_file_location("readme_tables", REPO / ".ci/readme-tables.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@needs_readme
def test_the_readme_table_of_state_places_is_the_generated_one() -> None:
    readme = README.read_text(encoding="utf-8")
    stale = "README.md is stale: run `make state-places`"
    assert _script().spliced(readme, "state-places") == readme, stale  # type: ignore[attr-defined]
    for profile in PROFILES.values():
        assert f"| `{profile.name}` | `{profile.state_dir}` |" in readme


@needs_readme
def test_every_state_path_in_the_readme_is_a_profiles() -> None:
    """A state file named by a fixed path names a profile's place (the sandbox's is lmp's,
    the default profile); elsewhere the README writes `<state>`."""
    places = {p.state_dir for p in PROFILES.values()}
    readme = README.read_text(encoding="utf-8")
    found = [(m.group(1), m.group(0)) for m in _STATE_FILE.finditer(readme)]
    assert found
    wrong = [text for directory, text in found if directory not in places]
    assert not wrong, f"state paths that are no profile's: {wrong}"

