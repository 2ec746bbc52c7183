"""What each LED state looks like: the states, and their signals on one LED and on a
red/green/blue triplet.

No side effects: the drivers in system/leds.py show these signals. A failure's blink count is
its exit code's in exit_codes.TABLE, the one exit-code contract (the README's table is rendered
from it too); the state names are what `pep-agent led` accepts.
"""

from __future__ import annotations

from dataclasses import dataclass

from pep_agent.exit_codes import TABLE, Exit

# The failure classes the LED shows, with their blink counts: exit_codes.TABLE, the one contract.
BLINK_CODES: dict[Exit, int] = {
    code: row.blinks for code, row in TABLE.items() if row.blinks is not None}


def _failure_name(code: Exit) -> str:
    return "failed-" + code.name.lower().replace("_", "-")


STATES: tuple[str, ...] = (
    "off", "provisioning", "waiting", "success", "verified", "deferred", "failed",
    *(_failure_name(code) for code in BLINK_CODES),
)


def failure_state(code: int) -> str:
    """The LED state for a failure exit code; codes without their own pattern get "failed"."""
    return _failure_name(Exit(code)) if code in BLINK_CODES else "failed"


@dataclass(frozen=True)
class Signal:
    """What one physical LED does: off, solid on, a steady blink, or a blink code."""

    kind: str  # "off" | "solid" | "blink" | "code"
    on_ms: int = 0
    off_ms: int = 0
    count: int = 0


OFF = Signal("off")
SOLID = Signal("solid")


_FAST = Signal("blink", 250, 250)
_SLOW = Signal("blink", 1000, 1000)

# One LED: every state differs in trigger or timing.
SINGLE: dict[str, Signal] = {
    "off": OFF,
    "provisioning": _FAST,
    "waiting": _SLOW,
    "success": Signal("blink", 1800, 200),  # nearly solid: done, about to reboot
    "verified": SOLID,
    # An identity in use that the server has not confirmed yet: a short flash, mostly off.
    "deferred": Signal("blink", 200, 1800),
    "failed": Signal("blink", 50, 50),  # flicker
    **{_failure_name(c): Signal("code", count=n) for c, n in BLINK_CODES.items()},
}

# Three LEDs, in the colour language of the old relays' LED controller; unnamed = off.
RGB: dict[str, dict[str, Signal]] = {
    "off": {},
    "provisioning": {"blue": _FAST},
    "waiting": {"green": _SLOW},
    "success": {"green": SOLID},
    "verified": {"blue": SOLID},
    "deferred": {"red": SOLID, "green": SOLID},  # amber: working, to be confirmed
    "failed": {"red": SOLID},
    **{_failure_name(c): {"red": Signal("code", count=n)} for c, n in BLINK_CODES.items()},
}
