"""What a run may touch, and its real wiring. Everything the flow does to the machine goes
through a Context: services, clock, LED, sd_notify, journal, HTTP client, FCC launcher and
the network probe; tests build one from fakes.

Side effects: none on import or construction (the HTTP client is built on first use, and
then warns when TLS verification is off). `Context.say` logs and sets sd_notify's STATUS=,
`Context.stop_fcc` stops FCC, and `launch_fcc` spawns it.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pep_agent.gateway.fcc import FccSession
from pep_agent.journal import Journal
from pep_agent.settings.config import Settings
from pep_agent.settings.paths import Paths
from pep_agent.settings.profiles import Profile
from pep_agent.system import netinfo
from pep_agent.system.clock import Clock
from pep_agent.system.http import PepClient
from pep_agent.system.leds import Led, make_led
from pep_agent.system.notify import Notifier
from pep_agent.system.services import ServiceManager, make_services

log = logging.getLogger("pep_agent")

# Starts FCC: (argv, working directory, environment) -> a running session.
FccLauncher = Callable[[Sequence[str], Path, Mapping[str, str]], FccSession]
# The IPv4 addresses of an interface; NetworkError when it does not exist.
NetworkProbe = Callable[[str], "list[str]"]


@dataclass
class Context:
    """What the steps may touch, injected so that tests can build it from fakes."""

    settings: Settings
    services: ServiceManager
    clock: Clock
    led: Led
    notifier: Notifier
    journal: Journal
    client_factory: Callable[[], PepClient]
    launch_fcc: FccLauncher
    probe_network: NetworkProbe
    # Filled in as the run goes.
    serial: str = ""
    serial_source: str = ""
    interface: str = ""
    ip: str = ""
    parsec: bool = False
    fcc: FccSession | None = None
    fcc_address: tuple[str, int] = ("", 0)
    verification_key: str = ""
    # The server's answer, kept in memory too: if saving it fails, the install still has it.
    answer: dict[str, Any] | None = None
    # Set by reprovision: every step's check ran (its findings are above), and the installed
    # identity is replaced.
    checked: bool = False
    replacing: bool = False
    # clear-identity moved the previous identity aside in this run.
    cleared: bool = False
    # What the last step does; reprovision restarts edge-core itself instead.
    reboot_at_end: bool = True
    # Called with (step, "before" | "after" | "answered") at each point where a crash tests
    # recovery; the real wiring does nothing there, the crash tests end the run as a power
    # cut or a kill would.
    crash_at: Callable[[str, str], None] = lambda step, when: None

    @property
    def paths(self) -> Paths:
        return self.settings.paths

    @property
    def profile(self) -> Profile:
        return self.settings.profile

    def fields(self) -> dict[str, Any]:
        """The run's structured journald fields, as they are now (ending.py adds them to every
        line a run logs)."""
        record = self.journal.record
        return {"PEP_STEP": record.step or "", "PEP_SERIAL": self.serial,
                "PEP_ATTEMPT": record.attempt or 0}

    def say(self, text: str) -> None:
        """A progress line for the log and for `systemctl status` (sd_notify STATUS=)."""
        log.info(text)
        self.notifier.status(text)

    def stop_fcc(self) -> None:
        """Stop this run's FCC, if it still runs."""
        if self.fcc is not None:
            self.fcc.stop()
            self.fcc = None


def make_led_for(settings: Settings) -> Led:
    """The LED the settings and the profile ask for."""
    paths, profile = settings.paths, settings.profile
    return make_led(settings.led_backend, leds_dir=settings.led_dir, name=settings.led_name,
                    command=settings.led_command,
                    identity_json=paths.under(profile.identity_json),
                    led_config=settings.led_config)


def launch_fcc(argv: Sequence[str], cwd: Path, env: Mapping[str, str]) -> FccSession:
    """The real FCC, through the process funnel."""
    return FccSession.start(argv, cwd=cwd, env=env)


def _client(settings: Settings) -> PepClient:
    return PepClient.from_settings(settings)


def build_context(settings: Settings) -> Context:
    """The real context: systemctl or the sandbox, the real clock, LED, notifier and journal."""
    return Context(settings=settings, services=make_services(settings.paths), clock=Clock(),
                   led=make_led_for(settings), notifier=Notifier(),
                   journal=Journal(settings.paths.journal),
                   client_factory=functools.cache(lambda: _client(settings)),
                   launch_fcc=launch_fcc, probe_network=netinfo.interface_ipv4,
                   reboot_at_end=settings.reboot)
