"""sd_notify: tells systemd that the agent is ready, what it is doing, and that it stops.

Side effect: libsystemd (systemd-python's `systemd.daemon.notify`) sends one datagram per
call to the socket named by $NOTIFY_SOCKET (a path, an abstract "@" socket, or whatever else
the host's libsystemd speaks). Without that variable every call is a no-op.

systemd-python is a dependency anyway (the journal handler), so its notify is used rather
than the protocol written out here. Its import cost, measured with `python -X importtime`
(15 fresh interpreters each, median, Python 3.11, systemd-python 235, two loaded cores):
0.8 ms when requests is already loaded, as it is in every command that builds a Notifier
(provision, reprovision, verify); 2.3 ms after socket alone; 12.8 ms in a bare interpreter,
nearly all of it socket, which a hand-written sd_notify imports too (its module cost 8 to
16 ms there). Less than a millisecond of a run that takes minutes is no reason to carry
the protocol.
"""

from __future__ import annotations

import os

import systemd.daemon


class Notifier:
    """sd_notify's three messages; failures are reported by return value only.

    `enabled` None follows $NOTIFY_SOCKET; False makes every call a no-op (tests).
    """

    def __init__(self, enabled: bool | None = None) -> None:
        self.enabled = bool(os.environ.get("NOTIFY_SOCKET")) if enabled is None else enabled

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
        if not self.enabled:
            return False
        try:
            return bool(systemd.daemon.notify(message))
        except OSError:  # the socket is gone, or refuses: systemd is not listening
            return False
