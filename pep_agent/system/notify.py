"""sd_notify: tells systemd that the agent is ready, what it is doing, and that it stops.

Side effect: sends datagrams to the AF_UNIX socket named by $NOTIFY_SOCKET (a path, or an
abstract socket written with a leading "@"). Without that variable every call is a no-op.
Only socket and os are imported, so that a short-lived command pays nothing for this.
"""

from __future__ import annotations

import os
import socket


class Notifier:
    """Speaks the sd_notify datagram protocol; failures are reported by return value only."""

    def __init__(self, address: str | None = None) -> None:
        self._address = os.environ.get("NOTIFY_SOCKET") if address is None else address

    @property
    def enabled(self) -> bool:
        return bool(self._address)

    def ready(self) -> bool:
        """READY=1: start-up is finished (Type=notify units leave 'activating')."""
        return self.send("READY=1")

    def status(self, text: str) -> bool:
        """STATUS=text, shown by `systemctl status`."""
        # A newline would start a new assignment in the datagram.
        return self.send("STATUS=" + " ".join(text.splitlines()))

    def stopping(self) -> bool:
        """STOPPING=1: the agent is shutting down."""
        return self.send("STOPPING=1")

    def send(self, message: str) -> bool:
        """Send one datagram; True when it was delivered to the socket."""
        address = self._address
        if not address:
            return False
        if address.startswith("@"):
            address = "\0" + address[1:]
        elif not address.startswith("/"):
            return False  # e.g. vsock: addresses, which a gateway agent does not need
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.connect(address)
                sock.sendall(message.encode("utf-8", errors="replace"))
        except OSError:
            return False
        return True
