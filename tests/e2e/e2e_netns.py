"""Two network namespaces joined by a veth pair: the gateway's side and the server's side.

Side effects: creates and deletes network namespaces (/run/netns/NAME) and the veth pair
between them with `ip`. Nothing outside these namespaces is configured or addressed; both
ends are called eth0 inside their namespace so the gateway looks like a board with one NIC.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass

# A /30 that exists only inside the two namespaces this module creates.
SERVER_ADDRESS = "10.203.113.1"
GATEWAY_ADDRESS = "10.203.113.2"
PREFIX = 30


@dataclass(frozen=True)
class NetPair:
    tag: str
    gateway_ns: str
    server_ns: str
    gateway_ip: str = GATEWAY_ADDRESS
    server_ip: str = SERVER_ADDRESS

    @property
    def gateway_ns_path(self) -> str:
        return f"/run/netns/{self.gateway_ns}"


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, timeout=30, stdin=subprocess.DEVNULL,
                   capture_output=True, text=True)


def create(tag: str) -> NetPair:
    """Create pepgw-TAG and pepsv-TAG, linked, addressed and up; undo all on failure."""
    pair = NetPair(tag=tag, gateway_ns=f"pepgw-{tag}", server_ns=f"pepsv-{tag}")
    try:
        _ip("netns", "add", pair.gateway_ns)
        _ip("netns", "add", pair.server_ns)
        # Temporary names in our own namespace are unique per tag; the ends are renamed
        # once they sit in their namespaces.
        _ip("link", "add", f"pg{tag}"[:15], "type", "veth", "peer", "name", f"ps{tag}"[:15])
        _ip("link", "set", f"pg{tag}"[:15], "netns", pair.gateway_ns)
        _ip("link", "set", f"ps{tag}"[:15], "netns", pair.server_ns)
        for ns, old, address in ((pair.gateway_ns, f"pg{tag}"[:15], pair.gateway_ip),
                                 (pair.server_ns, f"ps{tag}"[:15], pair.server_ip)):
            _ip("-n", ns, "link", "set", old, "name", "eth0")
            _ip("-n", ns, "addr", "add", f"{address}/{PREFIX}", "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")
            _ip("-n", ns, "link", "set", "lo", "up")
    except BaseException:
        delete(pair)
        raise
    return pair


def delete(pair: NetPair) -> None:
    """Remove both namespaces (the veth pair goes with them); safe to call twice."""
    # Only left in our namespace when create() failed before moving it.
    subprocess.run(["ip", "link", "del", f"pg{pair.tag}"[:15]], check=False, timeout=30,
                   stdin=subprocess.DEVNULL, capture_output=True)
    for ns in (pair.gateway_ns, pair.server_ns):
        subprocess.run(["ip", "netns", "del", ns], check=False, timeout=30,
                       stdin=subprocess.DEVNULL, capture_output=True)
