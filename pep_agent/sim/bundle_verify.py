"""What FCC checks at the end of a session and in its Verify: the bootstrap mode and CA, the
device's credentials (key and certificate match, client authentication, CN against the
endpoint name, validity against the device clock), the server URIs, the required
configuration parameters and their sizes, with the warnings it gathers on the way. No side
effects beyond recording the bootstrap CA in the Device (and reading the monotonic clock).

The rules, and what is left out, are summed up in pep_agent.sim.bundle_checks.
"""

from __future__ import annotations

from typing import Any

from pep_agent.gateway import esfs
from pep_agent.sim import x509
from pep_agent.sim.bundle import FccStatus
from pep_agent.sim.bundle_device import CURRENT_TIME, Device
from pep_agent.sim.bundle_messages import (
    BOOTSTRAP_OFF,
    CA_ID_UNSET,
    NO_CLOCK,
    NOT_SET,
    REDUNDANT,
    SELF_SIGNED,
    UNDER_TEN_YEARS,
    error,
)

UUID_ITEMS = ("mbed.ClassId", "mbed.VendorId")
UUID_SIZE = 16
TEN_YEARS = 10 * 365 * 24 * 3600
# How far in the future a certificate may start before FCC warns (fcc_verification.c).
CLOCK_SLACK = 60
# The configuration parameters Verify requires, in its order (fcc_verification.c).
META_DATA = ("mbed.Manufacturer", "mbed.ModelNumber", "mbed.DeviceType", "mbed.HardwareVersion",
             "mbed.MemoryTotalKB", "mbed.SerialNumber")


def _bootstrap_mode(device: Device, warnings: list[str]) -> bool:
    item = device.config("mbed.UseBootstrap")
    name = "mbed.UseBootstrap"
    if item is None:
        raise error(FccStatus.ITEM_NOT_EXIST, name, warnings)
    content = item.content()
    if len(content) != 4:
        raise error(FccStatus.WRONG_ITEM_DATA_SIZE, name, warnings)
    value = int.from_bytes(content, "little")
    if value not in (0, 1):
        raise error(FccStatus.BOOTSTRAP_MODE_ERROR, name, warnings)
    if value == 0:
        warnings.append(BOOTSTRAP_OFF + name)
    return value == 1


def end_session(device: Device) -> list[str]:
    """The last message of a session records the bootstrap CA (25 when it is missing)."""
    warnings: list[str] = []
    if _bootstrap_mode(device, warnings):
        certs = device.chain("mbed.BootstrapServerCACert")
        cert = x509.load_certificate(certs[0]) if certs else None
        if cert is None:
            raise error(FccStatus.ITEM_NOT_EXIST, "mbed.BootstrapServerCACert", warnings)
        device.ca_id = certs[0]
    return warnings


def _utc_offset_ok(value: str) -> bool:
    """±HH:MM, checked character by character as fcc_verification.c does."""
    return (len(value) >= 6 and value[0] in "+-" and value[3] == ":"
            and all(value[i].isdigit() and value[i].isascii() for i in (1, 2, 4, 5)))


def _expiry(cert: Any, name: str, device: Device, warnings: list[str]) -> None:
    now = device.now()
    if now == 0:
        warnings.append(NO_CLOCK + name)
        return
    start, end = x509.validity(cert)
    if now > end:
        raise error(FccStatus.EXPIRED_CERTIFICATE, name, warnings)
    if now + CLOCK_SLACK < start:
        warnings.append(NO_CLOCK + name)
    if end - now < TEN_YEARS:
        warnings.append(UNDER_TEN_YEARS + name)


def _present(device: Device, typed: str, name: str, warnings: list[str]) -> None:
    if typed in device.stored:
        warnings.append(REDUNDANT + name)


def _device_credentials(device: Device, mode: str, other: str, warnings: list[str]) -> None:
    key_name, cert_name = f"mbed.{mode}DevicePrivateKey", f"mbed.{mode}DeviceCert"
    key_item = device.stored.get(esfs.PRIVATE_KEY_PREFIX + key_name)
    if key_item is None:
        raise error(FccStatus.ITEM_NOT_EXIST, key_name, warnings)
    _present(device, esfs.PRIVATE_KEY_PREFIX + f"mbed.{other}DevicePrivateKey",
             f"mbed.{other}DevicePrivateKey", warnings)
    certs = device.chain(cert_name)
    if not certs:
        raise error(FccStatus.ITEM_NOT_EXIST, cert_name, warnings)
    cert = x509.load_certificate(certs[0])
    key = x509.load_private_key(key_item.content())
    if cert is None or key is None or not x509.matches(cert, key):
        raise error(FccStatus.CERTIFICATE_PUBLIC_KEY_CORRELATION_ERROR, cert_name, warnings)
    _present(device, esfs.CERT_PREFIX + f"mbed.{other}DeviceCert", f"mbed.{other}DeviceCert",
             warnings)
    if not x509.client_auth_allowed(cert):
        raise error(FccStatus.INVALID_CERTIFICATE, cert_name, warnings)
    endpoint = device.config("mbed.EndpointName")
    if endpoint is None or x509.common_name(cert) != endpoint.content():
        raise error(FccStatus.INVALID_LWM2M_CN_ATTR, cert_name, warnings)
    if x509.self_signed(cert):
        warnings.append(SELF_SIGNED + cert_name)
    for der in certs:
        later = x509.load_certificate(der)
        if later is not None:
            _expiry(later, cert_name, device, warnings)


def verify(device: Device) -> list[str]:
    """FCC's Verify over everything stored in the session: the warnings, or BundleError
    (carrying the warnings gathered before it), in fcc_verify_device_configured_4mbed_cloud's
    order."""
    warnings: list[str] = []
    if device.now() == 0:
        warnings.append(NOT_SET + CURRENT_TIME)
    zone = device.config("mbed.Timezone")
    if zone is None or not zone.content():
        warnings.append(NOT_SET + "mbed.Timezone")
    offset = device.config("mbed.UTCOffset")
    if offset is None or not offset.content():
        warnings.append(NOT_SET + "mbed.UTCOffset")
    elif not _utc_offset_ok(offset.content().decode("utf-8", "replace")):
        raise error(FccStatus.UTC_OFFSET_WRONG_FORMAT, "mbed.UTCOffset", warnings)
    bootstrap = _bootstrap_mode(device, warnings)
    endpoint = device.config("mbed.EndpointName")
    if endpoint is None:
        raise error(FccStatus.ITEM_NOT_EXIST, "mbed.EndpointName", warnings)
    if not endpoint.content():
        raise error(FccStatus.EMPTY_ITEM, "mbed.EndpointName", warnings)
    for name in META_DATA:
        if device.config(name) is None:
            raise error(FccStatus.ITEM_NOT_EXIST, name, warnings)
    mode, other = ("Bootstrap", "LwM2M") if bootstrap else ("LwM2M", "Bootstrap")
    ca_name = f"mbed.{mode}ServerCACert"
    ca = device.chain(ca_name)
    if not ca:
        raise error(FccStatus.ITEM_NOT_EXIST, ca_name, warnings)
    _present(device, esfs.CERT_PREFIX + f"mbed.{other}ServerCACert", f"mbed.{other}ServerCACert",
             warnings)
    if bootstrap and device.ca_id != ca[0]:
        warnings.append(CA_ID_UNSET + ca_name)
    uri_name = f"mbed.{mode}ServerURI"
    uri = device.config(uri_name)
    if uri is None:
        raise error(FccStatus.ITEM_NOT_EXIST, uri_name, warnings)
    if not uri.content().startswith(b"coaps://"):
        raise error(FccStatus.URI_WRONG_FORMAT, uri_name, warnings)
    _device_credentials(device, mode, other, warnings)
    update = device.chain("mbed.UpdateAuthCert")
    if not update:
        warnings.append(NOT_SET + "mbed.UpdateAuthCert")
    for der in update:
        cert = x509.load_certificate(der)
        if cert is not None:
            _expiry(cert, "mbed.UpdateAuthCert", device, warnings)
    for name in UUID_ITEMS:
        item = device.config(name)
        if item is None:
            warnings.append(NOT_SET + name)
        elif len(item.content()) != UUID_SIZE:
            raise error(FccStatus.WRONG_ITEM_DATA_SIZE, name, warnings)
    return warnings
