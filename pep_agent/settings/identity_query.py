"""The identity request's query (GET /v3/identity), and its size against the pep server's
limit, checked when the settings are loaded. It reads the settings through the fields it
needs (QueryFields), so that the settings module, which calls the check, is not imported back.

No side effects. The real server (node.js 10) refuses a request whose request line and headers
exceed MAX_REQUEST_HEAD; the serial, the FCC address and the verification key are known only
during a run, so the check takes the longest each can be: a setting that makes the request too
long is a ConfigError (exit 3) before edge-core is held and FCC started, not a server error
after.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Optional, Protocol

from pep_agent.errors import ConfigError, SerialError
from pep_agent.settings.envfile import env_name
from pep_agent.settings.serials import SERIAL_MAX
from pep_agent.settings.urls import MAX_REQUEST_HEAD, request_size


class QueryFields(Protocol):
    """The settings that go into the identity request."""

    server_url: str
    serial: Optional[str]
    api_address: str
    gateway_services_address: str
    hardware_version: str
    radio_config: str
    led_config: str
    category: str


def identity_query(settings: QueryFields, serial: str, ip: str, port: int,
                   verification_key: str) -> dict[str, str]:
    """The /v3/identity query, in the reference CLI's field order."""
    return {
        "ip": ip,
        "port": str(port),
        "serialNumber": serial,
        "apiAddress": settings.api_address,
        "gatewayServicesAddress": settings.gateway_services_address,
        "hardwareVersion": settings.hardware_version,
        "radioConfig": settings.radio_config,
        "ledConfig": settings.led_config,
        "category": settings.category,
        "verificationKey": verification_key,
    }

# The longest values of what is only known during a run. journalctl prints a verification key
# as 12 seed bytes in hex groups of 6, "/", then start and interval as 64-bit hex numbers.
_LONGEST_SERIAL = "'" * SERIAL_MAX  # URL-encodes to 3 bytes a character
_LONGEST_IP, _LONGEST_PORT = "255.255.255.255", 65535
_LONGEST_KEY = "-".join(["ffffff"] * 4) + "/" + "f" * 16 + "-" + "f" * 16
# The settings that go into the identity request, for naming the one that is too long.
_REQUEST_FIELDS = {"hardware_version": "hardwareVersion", "api_address": "apiAddress",
                   "gateway_services_address": "gatewayServicesAddress",
                   "radio_config": "radioConfig", "led_config": "ledConfig",
                   "category": "category", "serial": "serialNumber", "server_url": None}


def _serial_weight(serial: str) -> int:
    """The bytes a serial adds to a request, URL-encoded."""
    return request_size("http://h", "", {"serialNumber": serial})


def check_request_size(settings: QueryFields, named: Callable[[str], str] = env_name) -> None:
    """ConfigError when the identity request, with the longest serial, IP, port and key a run
    can have, would exceed what the pep server accepts: found now, not after edge-core is
    held and FCC started. Names the longest setting that goes into the request (`named` says
    where it came from); a serial that long breaks the serial-number rule first (SerialError)."""
    def weight(name: str) -> int:
        key, value = _REQUEST_FIELDS[name], getattr(settings, name)
        if value is None:
            return 0
        return request_size("http://h", "", {key: value}) if key else len(value)

    # A configured serial longer than provisioning allows still goes out with get-one-identity.
    serial = settings.serial if weight("serial") > _serial_weight(_LONGEST_SERIAL) else None
    query = identity_query(settings, serial or _LONGEST_SERIAL, _LONGEST_IP, _LONGEST_PORT,
                           _LONGEST_KEY)
    size = request_size(settings.server_url, "/v3/identity", query)
    if size <= MAX_REQUEST_HEAD:
        return

    worst = max(_REQUEST_FIELDS, key=weight)
    length = len(str(getattr(settings, worst)))
    if worst == "serial":
        # No gateway's serial is that long: the rule a technician can act on is the serial's.
        raise SerialError(f"the serial number from {named('serial')} has {length} characters "
                          f"(at most {SERIAL_MAX})",
                          hint="give the gateway's serial number (the pep server's requests "
                               "carry at most 8 KiB)")
    raise ConfigError(
        f"the identity request would be up to {size} bytes, over the {MAX_REQUEST_HEAD} "
        f"the pep server accepts: {named(worst)} has {length} characters",
        hint=f"shorten {named(worst)} by at least {size - MAX_REQUEST_HEAD} bytes "
             "(URL-encoded: a character other than a letter, a digit, a space or _.-~ "
             "takes 3 bytes or more)")
