"""Network interface facts (read-only): IPv4 addresses and the interface towards a host.

The addresses come from psutil (getifaddrs underneath); the default route, which psutil does
not report, from the kernel's IPv4 routing table in /proc. No side effects.
"""

from __future__ import annotations

import socket

import psutil

from pep_agent.errors import NetworkError
from pep_agent.settings.paths import HOST_PROC


def _ipv4_addresses() -> list[tuple[str, str]]:
    """(interface, IPv4 address) for every address the kernel has, aliases included."""
    try:
        table = psutil.net_if_addrs()
    except OSError as e:
        raise NetworkError(f"cannot list network addresses: {e.strerror or e}") from None
    # An alias (eth0:1) is listed under its own label; it belongs to the device before the ':'.
    return [(name.partition(":")[0], entry.address)
            for name, entries in table.items() for entry in entries
            if entry.family == socket.AF_INET]


def interface_ipv4(iface: str) -> list[str]:
    """IPv4 addresses of `iface`; NetworkError when the interface does not exist."""
    if iface not in {name for _, name in socket.if_nameindex()}:
        raise NetworkError(f"network interface {iface!r} does not exist")
    return [addr for name, addr in _ipv4_addresses() if name == iface]


def interface_of_address(address: str) -> str | None:
    """The interface holding IPv4 `address`, if any."""
    for name, addr in _ipv4_addresses():
        if addr == address:
            return name
    return None


def route_source_address(host: str, port: int) -> str | None:
    """The local IPv4 address the kernel would use to reach host:port (no packet is sent)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect((host, port))  # UDP connect only consults the routing table
            return str(s.getsockname()[0])
    except OSError:
        return None


def default_interface() -> str | None:
    """The interface of the IPv4 default route, if there is one."""
    try:
        lines = (HOST_PROC / "net" / "route").read_text().splitlines()[1:]
    except OSError:
        return None
    best: tuple[int, str] | None = None
    for line in lines:
        fields = line.split()
        # Iface Destination Gateway Flags RefCnt Use Metric Mask ...; 0x1 = RTF_UP
        is_default = len(fields) >= 8 and fields[1] == fields[7] == "00000000"
        if is_default and int(fields[3], 16) & 1 and (best is None or int(fields[6]) < best[0]):
            best = (int(fields[6]), fields[0])
    return best[1] if best else None


def tcp_probe(ip: str, port: int, timeout: float) -> str | None:
    """None when something accepts TCP connections at ip:port, else the reason it does not."""
    try:
        with socket.create_connection((ip, port), timeout=timeout):
            return None
    except OSError as e:
        return e.strerror or type(e).__name__
