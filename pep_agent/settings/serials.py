"""What a serial number may be: one rule for every command and every source.

No side effects. Every serial is normalised (normalise_serial); one to provision with must
also fit the endpoint-name rule (validate_serial).
"""

from __future__ import annotations

import re

from pep_agent.errors import SerialError

# The pep server re-decodes the serial with decodeURI; these are the characters it survives.
SERIAL_RE = re.compile(r"[A-Za-z0-9'+,\-.:/= ]+")
SERIAL_MAX = 64  # the serial becomes the LwM2M endpoint name


def normalise_serial(serial: str, source: str, hint: str | None = None) -> str:
    """The serial without surrounding whitespace (or NULs, from the device tree); SerialError
    when nothing is left. Applied to every serial, by every command, from every source."""
    value = serial.strip().strip("\x00").strip()
    if not value:
        raise SerialError(f"the serial number from {source} is empty", hint=hint)
    return value


def validate_serial(serial: str, source: str) -> str:
    """A serial to provision with: normalised, then SerialError when too long or with a
    character outside the endpoint-name set. The pep-cli commands take any serial, as the
    reference CLI does, so that they can reach every record on the server."""
    value = normalise_serial(serial, source)
    if len(value) > SERIAL_MAX:
        raise SerialError(f"the serial number from {source} has {len(value)} characters "
                          f"(at most {SERIAL_MAX})")
    if not SERIAL_RE.fullmatch(value):
        bad = sorted({c for c in value if not SERIAL_RE.fullmatch(c)})
        raise SerialError(
            f"the serial number from {source} contains forbidden character(s) "
            f"{' '.join(repr(c) for c in bad[:8])}",
            hint="allowed: letters, digits, space and ' + , - . : / =")
    return value
