"""The state of the FCC stand-in's device that lasts from one message to the next: the items
stored in the session and the device clock. No side effects beyond the Device it changes (and
reading the monotonic clock).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from pep_agent.gateway import esfs
from pep_agent.sim.bundle import Bundle, FccStatus, Item
from pep_agent.sim.bundle_messages import ALREADY_EXISTS, kcm_error

# The configuration parameter that sets the device clock (it is not stored).
CURRENT_TIME = "mbed.CurrentTime"
# The most certificates a chain holds: Cert_<name>, then Crt1_<name> ... Crt4_<name>.
MAX_CHAIN = 5


@dataclass
class Device:
    """What lasts from one message to the next: the items stored (by KCM's typed name), the
    device clock mbed.CurrentTime set, and the bootstrap CA recorded at the end of a session."""

    stored: dict[str, Item] = field(default_factory=dict)
    clock: tuple[float, float] | None = None  # (device time set, monotonic time then)
    ca_id: bytes | None = None

    def now(self) -> float:
        """The device time; 0 while mbed.CurrentTime was never set (as pal_osGetTime)."""
        if self.clock is None:
            return 0.0
        return self.clock[0] + time.monotonic() - self.clock[1]

    def config(self, name: str) -> Item | None:
        return self.stored.get(esfs.CONFIG_PREFIX + name)

    def chain(self, name: str) -> list[bytes]:
        """The certificates stored under name: Cert_<name>, then Crt1_<name>, ..."""
        first = self.stored.get(esfs.CERT_PREFIX + name)
        if first is None:
            return []
        certs = [first.content()]
        for index in range(1, MAX_CHAIN):
            item = self.stored.get(f"Crt{index}_{name}")
            if item is None:
                break
            certs.append(item.content())
        return certs

    def keep(self, result: Bundle, item: Item) -> None:
        """Store item (17 if its typed name is taken in this session)."""
        if item.typed in self.stored:
            raise kcm_error(FccStatus.KCM_FILE_EXIST_ERROR, ALREADY_EXISTS, item.name)
        self.stored[item.typed] = item
        result.items.append(item)
