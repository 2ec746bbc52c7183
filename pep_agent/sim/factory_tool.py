"""The factory tool's side of the FCC exchange, as the pep server runs it.

Side effects: opens one TCP connection to the FCC address it is given. Every socket operation
is bounded by the timeout, and the whole exchange by the same deadline. Only literal IP
addresses are accepted, so a typo never turns into a DNS lookup.
"""

from __future__ import annotations

import ipaddress
import secrets
import socket
import time
import uuid
from dataclasses import dataclass

from pep_agent.sim import bundle, wire
from pep_agent.sim.x509 import Authority, enrollment_id


class InjectionError(Exception):
    """The exchange with FCC failed; the message is safe to show to an operator."""


# The manufacturer's domain FCU derives mbed.VendorId from (a UUID5 in the DNS namespace).
VENDOR_DOMAIN = "pep-sim.invalid"


@dataclass(frozen=True)
class FactorySettings:
    """What every bundle from one server shares: the CA, the account, the bootstrap URI, and the
    firmware-update certificate (DER) when one is configured."""

    authority: Authority
    account_id: str
    bootstrap_uri: str
    update_auth_cert: bytes | None = None

    @classmethod
    def generate(cls, update_auth_cert: bytes | None = None) -> FactorySettings:
        account = secrets.token_hex(16)
        uri = f"coaps://bootstrap.us-east-1.mbedcloud.com:5684?aid={account}"
        return cls(Authority.generate(), account, uri, update_auth_cert)


@dataclass(frozen=True)
class Injection:
    """A successful injection: the enrollment id and FCC's WarningInfo (empty when none)."""

    enrollment_id: str
    warning: str


def device_items(settings: FactorySettings, serial: str,
                 hardware_version: str) -> tuple[list[bundle.Item], bytes]:
    """The items of one gateway's bundle and its device certificate (DER)."""
    key, cert = settings.authority.issue(serial, settings.account_id)
    # As FCU does: vendor id from the manufacturer's domain, class id from vendor and model.
    vendor = uuid.uuid5(uuid.NAMESPACE_DNS, VENDOR_DOMAIN)
    model = uuid.uuid5(vendor, hardware_version)
    items = [
        bundle.Item("Keys", "mbed.BootstrapDevicePrivateKey", key.private_der, "ECCPrivate"),
        bundle.Item("Certificates", "mbed.BootstrapDeviceCert", cert),
        bundle.Item("Certificates", "mbed.BootstrapServerCACert", settings.authority.cert_der),
        bundle.Item("ConfigParams", "mbed.UseBootstrap", 1),
        bundle.Item("ConfigParams", "mbed.BootstrapServerURI", settings.bootstrap_uri),
        bundle.Item("ConfigParams", "mbed.EndpointName", serial),
        bundle.Item("ConfigParams", "mbed.AccountID", settings.account_id),
        bundle.Item("ConfigParams", "mbed.SerialNumber", serial),
        bundle.Item("ConfigParams", "mbed.HardwareVersion", hardware_version),
        bundle.Item("ConfigParams", "mbed.Manufacturer", "pep-sim"),
        bundle.Item("ConfigParams", "mbed.ModelNumber", hardware_version),
        bundle.Item("ConfigParams", "mbed.DeviceType", "edge-gateway"),
        bundle.Item("ConfigParams", "mbed.MemoryTotalKB", 0),
        bundle.Item("ConfigParams", "mbed.CurrentTime", int(time.time())),
        # The real FCC takes only ±HH:MM (fcc_verification.c); "+0:00" is refused with 33.
        bundle.Item("ConfigParams", "mbed.UTCOffset", "+00:00"),
        bundle.Item("ConfigParams", "mbed.Timezone", "UTC"),
        bundle.Item("ConfigParams", "mbed.VendorId", vendor.bytes),
        bundle.Item("ConfigParams", "mbed.ClassId", model.bytes),
    ]
    if settings.update_auth_cert is not None:
        items.append(bundle.Item("Certificates", "mbed.UpdateAuthCert", settings.update_auth_cert))
    return items, cert


def parse_target(ip: str | None, port: str | None) -> tuple[str, int]:
    """Validate the FCC address from the query (port 7777 when absent)."""
    if not ip:
        raise InjectionError("no gateway ip given")
    try:
        address = str(ipaddress.ip_address(ip))
    except ValueError:
        raise InjectionError(f"{ip!r} is not an IP address") from None
    raw_port = port or "7777"
    if not raw_port.isdigit() or not 0 < int(raw_port) < 65536:
        raise InjectionError(f"{raw_port!r} is not a TCP port")
    return address, int(raw_port)


# FCC prints its port a moment before it listens: a connection refused right then is retried.
CONNECT_TRIES = 10
CONNECT_PAUSE = 0.05


def _connect(address: str, port: int, timeout: float) -> socket.socket:
    for attempt in range(CONNECT_TRIES):
        try:
            return socket.create_connection((address, port), timeout=timeout)
        except ConnectionRefusedError:
            if attempt == CONNECT_TRIES - 1:
                raise
            time.sleep(CONNECT_PAUSE)
    raise AssertionError("unreachable")


def exchange(address: str, port: int, message: bytes, *, timeout: float,
             sid: str | None = None) -> dict[str, object]:
    """Send one request to FCC and return its checked response map."""
    deadline = time.monotonic() + timeout
    try:
        with _connect(address, port, timeout) as sock:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            sock.sendall(wire.frame_request(message))
            reader = wire.StreamReader(wire.socket_recv(sock, timeout=timeout, deadline=deadline))
            status, reply = wire.read_response(reader)
    except (TimeoutError, socket.timeout):
        raise InjectionError(f"no answer from FCC within {timeout:g} s") from None
    except wire.ConnectionClosed as e:
        # The real FCC closes without an answer when it refuses the framing.
        raise InjectionError(f"FCC closed the connection without an answer ({e})") from None
    except wire.WireError as e:
        raise InjectionError(f"the factory tool refused FCC's answer: {e}") from None
    except OSError as e:
        raise InjectionError(f"cannot reach FCC: {e.strerror or e}") from None
    if status != 0 or reply is None:
        name = wire.CommStatus(status).name if status in wire.CommStatus._value2member_map_ \
            else "unknown"
        raise InjectionError(f"FCC refused the framed request: comm status {status} ({name})")
    try:
        return bundle.decode_response(reply, sid)
    except bundle.BundleError as e:
        raise InjectionError(str(e)) from None


def provision(settings: FactorySettings, ip: str | None, port: str | None, serial: str,
              hardware_version: str, *, timeout: float) -> Injection:
    """Inject a new identity for serial into the FCC at ip:port.

    Succeeds only on ReturnStatus 0 (warnings do not fail it), as the real server decides 200.
    """
    address, port_number = parse_target(ip, port)
    items, cert = device_items(settings, serial, hardware_version)
    sid = secrets.token_hex(8)
    message = bundle.encode_request(items, sid=sid)
    reply = exchange(address, port_number, message, timeout=timeout, sid=sid)
    warning = reply.get("WarningInfo")
    return Injection(enrollment_id(cert), warning.strip() if isinstance(warning, str) else "")
