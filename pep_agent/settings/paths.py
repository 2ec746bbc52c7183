"""Every on-disk location the agent uses, derived from one root. No side effects.

`Paths(root)` is the only place besides profiles.py where absolute machine paths appear; the
whole agent runs inside any directory given as root, which is how tests and the demo work.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Optional

from pep_agent.settings.profiles import PROFILES

# The running kernel's process table: the agent's own processes live there whatever --root is.
HOST_PROC = Path("/proc")


# Where versions before 0.x kept their state (a /var/lib that read-only-rootfs images put in
# RAM): still read, so that gateways provisioned then keep working.
LEGACY_STATE_DIR = "/var/lib/pep-agent"
DEFAULT_STATE_DIR = "/userdata/pep-agent"


@dataclass(frozen=True)
class Paths:
    """Locations under `root`; `root == Path("/")` on a real gateway.

    The state directory (journal, marker, lock) is `state_setting` (PEP_STATE_DIR) when set,
    else the profile's place on the identity's partition (`profile_state`), or the legacy
    /var/lib/pep-agent when only that one holds a run's state. Without a profile (status), the
    first of every profile's places that holds state. With a setting or a profile (a run), it
    is chosen at the first use and kept: the run's state never moves to another place.
    """

    root: Path = Path("/")
    state_setting: Optional[str] = None
    profile_state: Optional[str] = None

    def under(self, absolute: str | Path) -> Path:
        """Map an absolute machine path (e.g. from a profile) below the root."""
        return self.root / str(absolute).lstrip("/")

    @property
    def sandboxed(self) -> bool:
        return self.root.resolve() != Path("/")

    @property
    def env_file(self) -> Path:
        return self.under("/etc/default/pep-agent")

    @property
    def state_dir(self) -> Path:
        if self.state_setting or self.profile_state:
            return self._run_state_dir
        # Without a profile this is a reader (status), which may wait for a run to appear at
        # any of the places: it looks again at each use.
        return self._first_with_state([DEFAULT_STATE_DIR, *(p.state_dir for p in
                                                             PROFILES.values())])

    @cached_property
    def _run_state_dir(self) -> Path:
        if self.state_setting:
            return self.under(self.state_setting)
        return self._first_with_state([self.profile_state or DEFAULT_STATE_DIR])

    def _first_with_state(self, places: list[str]) -> Path:
        """The first of `places` (then the legacy place) holding a run's state, else the first."""
        for place in dict.fromkeys([*places, LEGACY_STATE_DIR]):
            d = self.under(place)
            if (d / "state.json").exists() or (d / "provisioned").exists():
                return d
        return self.under(places[0])

    @property
    def journal(self) -> Path:
        return self.state_dir / "state.json"

    @property
    def saved_response(self) -> Path:
        return self.state_dir / "response.json"

    @property
    def provisioned_marker(self) -> Path:
        return self.state_dir / "provisioned"

    @property
    def verified_marker(self) -> Path:
        return self.state_dir / "verified"

    @property
    def lock(self) -> Path:
        # Not the runtime directory: systemd deletes that whenever the unit stops or restarts.
        return self.state_dir / "lock"

    def unit_hold(self, unit: str) -> Path:
        """The runtime drop-in that keeps `unit` from starting while the agent holds it."""
        return self.under(f"/run/systemd/system/{unit}.d/50-pep-agent-hold.conf")

    @property
    def sandbox_services(self) -> Path:
        """Where the sandbox service manager records what it would have done."""
        return self.state_dir / "sandbox-services.log"

    @property
    def leds(self) -> Path:
        return self.under("/sys/class/leds")

    @property
    def device_tree_serial(self) -> tuple[Path, ...]:
        return (
            self.under("/proc/device-tree/serial-number"),
            self.under("/sys/firmware/devicetree/base/serial-number"),
        )

    @property
    def cpuinfo(self) -> Path:
        return self.under("/proc/cpuinfo")

    @property
    def dmi_serial(self) -> Path:
        return self.under("/sys/class/dmi/id/product_serial")

    @property
    def parsec_socket(self) -> Path:
        return self.under("/run/parsec/parsec.sock")
