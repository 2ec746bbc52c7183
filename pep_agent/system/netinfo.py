"""Network interface facts (read-only): IPv4 addresses and the interface towards a host."""

from __future__ import annotations

import socket

import netifaces

from pep_agent.errors import NetworkError


def interface_ipv4(iface: str) -> list[str]:
    """IPv4 addresses of `iface`; NetworkError when the interface does not exist."""
    if iface not in netifaces.interfaces():
        raise NetworkError(f"network interface {iface!r} does not exist")
    entries = netifaces.ifaddresses(iface).get(netifaces.AF_INET, [])
    return [e["addr"] for e in entries if e.get("addr")]


def interface_of_address(address: str) -> str | None:
    """The interface holding IPv4 `address`, if any."""
    for iface in netifaces.interfaces():
        for e in netifaces.ifaddresses(iface).get(netifaces.AF_INET, []):
            if e.get("addr") == address:
                return str(iface)
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
    default = netifaces.gateways().get("default")
    gw = default.get(netifaces.AF_INET) if isinstance(default, dict) else None
    return str(gw[1]) if gw else None


def tcp_probe(ip: str, port: int, timeout: float) -> str | None:
    """None when something accepts TCP connections at ip:port, else the reason it does not."""
    try:
        with socket.create_connection((ip, port), timeout=timeout):
            return None
    except OSError as e:
        return e.strerror or type(e).__name__
