"""Serial number and interface discovery.

Side effects: reads device-tree, /proc and DMI files under the root; may run the configured
serial command; reads interface addresses. Nothing is written.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from pep_agent.errors import NetworkError, SerialError
from pep_agent.settings.config import Settings
from pep_agent.settings.serials import validate_serial
from pep_agent.system import netinfo, proc


def cpuinfo_serial(text: str) -> str | None:
    """The `Serial` field of /proc/cpuinfo (Raspberry Pi), if present and not all zeros."""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "Serial" and value.strip().strip("0"):
            return value.strip()
    return None


def discover_serial(settings: Settings,
                    run: Callable[..., proc.Result] = proc.run) -> tuple[str, str]:
    """(serial, source): configured value, device tree, cpuinfo, DMI, then the serial command.
    The first source that holds one is validated, once."""
    text, where, source = _first_serial(settings, run)
    return validate_serial(text, where), source


def _first_serial(settings: Settings, run: Callable[..., proc.Result]) -> tuple[str, str, str]:
    """(text, where it was read, source) of the first source that holds a serial."""
    if settings.serial is not None:
        return settings.serial, "the configuration", "configuration"
    paths = settings.paths
    for path in paths.device_tree_serial:
        text = _read(path)
        if text and text.strip("\x00").strip():
            return text, str(path), "device-tree"
    text = _read(paths.cpuinfo)
    serial = cpuinfo_serial(text) if text else None
    if serial:
        return serial, str(paths.cpuinfo), "cpuinfo"
    text = _read(paths.dmi_serial)
    if text and text.strip() and text.strip().lower() not in ("", "none", "to be filled by o.e.m."):
        return text, "DMI product_serial", "dmi"
    if settings.serial_command:
        try:
            result = run(shlex.split(settings.serial_command), timeout=30)
        except (proc.ProcessError, ValueError) as e:
            raise SerialError(f"the serial command failed: {e}") from None
        return result.stdout, "the serial command", "command"
    raise SerialError("no serial number found (device tree, /proc/cpuinfo, DMI)")


def choose_interface(settings: Settings) -> str:
    """The configured interface, else the one routing towards the server, else the default."""
    if settings.interface:
        return settings.interface
    parts = urlsplit(settings.server_url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    src = netinfo.route_source_address(parts.hostname or "", port)
    iface = netinfo.interface_of_address(src) if src else None
    iface = iface or netinfo.default_interface()
    if not iface:
        raise NetworkError("no network interface routes towards the server",
                           hint="pass --interface or set PEP_INTERFACE")
    return iface


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
