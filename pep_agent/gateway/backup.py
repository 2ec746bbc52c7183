"""The previous identity, set aside while a run replaces it: every `*.pep-previous`.

What a run may set aside: the identity folders (mcc_config, edge_gw_config), the agent's
markers (provisioned, verified) and the Parsec state (Parsec's and the software TPM's). Each
goes beside itself as `<name>.pep-previous`; it comes back from there when a run fails, and is
discarded once a run has installed a new identity. Every move is the durable rename, so a power
cut leaves each item whole, in its place or aside.

Side effects: renames and removes those items under the root; fsyncs their directories; with
Parsec, stops its services and the software TPM around the moves and starts them again.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from pathlib import Path

from pep_agent.settings.paths import Paths
from pep_agent.settings.profiles import Profile
from pep_agent.system import fsutil
from pep_agent.system.services import ServiceManager

SUFFIX = ".pep-previous"


def aside(place: Path) -> Path:
    """Where `place`'s previous content waits."""
    return place.with_name(place.name + SUFFIX)


def _present(path: Path) -> bool:
    return path.exists() or path.is_symlink()


class Backup:
    """The gateway's `*.pep-previous`: set aside, restored, discarded."""

    def __init__(self, paths: Paths, profile: Profile) -> None:
        identity_json = paths.under(profile.identity_json)
        self.identity = (paths.under(profile.mcc_config), identity_json.parent)
        self.parsec_state = paths.under(profile.parsec_state)
        self.markers = (paths.provisioned_marker, paths.verified_marker)
        # Restored in this order: the provisioned marker, which vouches for the rest, last.
        self.places = (*self.identity, self.parsec_state, *reversed(self.markers))
        self._units = (profile.parsec_unit, profile.swtpm_unit)

    @contextlib.contextmanager
    def _parsec_stopped(self, services: ServiceManager | None) -> Iterator[None]:
        """Parsec and the software TPM hold their state and the Parsec store open: stopped
        while they move (the upstream reset of TPM-backed storage, except that the old state
        is kept), started again after, the move done or not."""
        if services is None:
            yield
            return
        for unit in self._units:
            services.act("stop", unit)
        try:
            yield
        finally:
            for unit in reversed(self._units):
                services.act("start", unit)

    def held(self) -> list[Path]:
        """The places whose previous content is aside."""
        return [place for place in self.places if _present(aside(place))]

    def set_aside(self, places: Iterable[Path], parsec: ServiceManager | None = None
                  ) -> list[Path]:
        """Move each of `places` aside, in the order given; returns those moved. With Parsec,
        `parsec` stops its services around the moves.

        Idempotent: a place already held aside keeps what is there (the previous content: a
        run that failed, or was cut between two moves, set it aside), and what is in its place
        now is that run's leftover, which goes. A provisioned marker in place means that what
        is aside is older than what it vouches for (left by a version that did not discard
        it): it goes first.
        """
        if _present(self.markers[0]):
            self.discard()
        moved = []
        with self._parsec_stopped(parsec):
            for place in places:
                if _present(aside(place)):
                    fsutil.remove(place)
                elif _present(place):
                    fsutil.durable_rename(place, aside(place))
                    moved.append(place)
        return moved

    def restore(self, parsec: ServiceManager | None = None) -> list[Path]:
        """Put everything held aside back, over what a failed run left in its place; returns
        the places restored. With Parsec, `parsec` stops its services around the moves.
        Idempotent: a place already restored holds nothing aside."""
        restored = []
        with self._parsec_stopped(parsec):
            for place in self.held():
                fsutil.remove(place)
                fsutil.durable_rename(aside(place), place)
                restored.append(place)
        return restored

    def discard(self) -> None:
        """A new identity is installed: nothing aside is worth keeping."""
        for place in self.held():
            fsutil.remove(aside(place))
            # Gone for good: a discarded item that came back after a power cut would be taken
            # for the previous identity by the next run.
            fsutil.fsync_dir(place.parent)
