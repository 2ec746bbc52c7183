"""Fakes shared by the unit tests: a clock, a scripted pep server client, FCC and the network.

A run built with `make_context` touches only its temporary root: the sandbox service manager
(a real component, recording under the root), no LED, no sd_notify.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pep_agent.errors import NotFoundError, PepError, ServerUnreachableError
from pep_agent.flow import Context
from pep_agent.gateway import esfs, install
from pep_agent.journal import Journal
from pep_agent.settings.config import load_settings
from pep_agent.sim import esfs_codec
from pep_agent.system.notify import Notifier
from pep_agent.system.services import SandboxServices

# The nonce of every ESFS item the fakes write: fixed, so that files compare byte for byte.
NONCE = bytes(range(8))

GOOD = {"serialNumber": "SN-1", "enrollmentID": "A-00"}
# Far above any kernel's pid_max: no process can have it, so a leftover check finds nothing.
NO_PID = 2**30


class FakeClock:
    """Time that moves only when slept; jitter draws are recorded. Callable: monotonic."""

    def __init__(self) -> None:
        self.t = 0.0
        self.sleeps: list[float] = []
        self.draws: list[tuple[float, float]] = []

    def __call__(self) -> float:
        return self.t

    def monotonic(self) -> float:
        return self.t

    def now(self) -> float:
        return 1_700_000_000.0 + self.t

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += seconds

    def uniform(self, low: float, high: float) -> float:
        self.draws.append((low, high))
        return high * 0.5


class FakeLed:
    """Records every state shown."""

    def __init__(self) -> None:
        self.shown: list[str] = []

    def show(self, state: str) -> list[str]:
        self.shown.append(state)
        return []


class ScriptedClient:
    """The pep server's answers in order; GET /v3/enrollment-id from `records` (else 404)."""

    def __init__(self, *answers: Any, records: dict[str, Any] | None = None,
                 on_identity: Callable[[], None] | None = None) -> None:
        self.answers = list(answers)
        self.queries: list[dict[str, str]] = []
        # serial -> enrollment id (or an error to raise); absent: 404.
        self.records = records or {}
        self.lookups: list[str] = []
        # Runs when a request arrives, before its answer: the server injecting FCC.
        self.on_identity = on_identity

    def enrollment_id(self, serial: str) -> str:
        self.lookups.append(serial)
        found = self.records.get(serial)
        if found is None:
            raise NotFoundError(f"enrollment id of {serial!r}: not found on the server")
        if isinstance(found, PepError):
            raise found
        return str(found)

    def identity(self, query: dict[str, str], **_: Any) -> dict[str, Any]:
        self.queries.append(query)
        if self.on_identity is not None:
            self.on_identity()
        answer = self.answers.pop(0)
        if isinstance(answer, PepError):
            raise answer
        return dict(answer)


def transient(message: str = "connection refused") -> PepError:
    err = ServerUnreachableError(message)
    err.transient = True
    return err


def unsent(message: str = "connection refused") -> PepError:
    err = transient(message)
    err.sent = False
    return err


class FakeChild:
    def __init__(self) -> None:
        self.returncode: int | None = None

    def poll(self) -> int | None:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        # proc.wait on a fake: FCC "exits" at once, as after a finished exchange.
        self.returncode = 0 if self.returncode is None else self.returncode
        return self.returncode


class FakeFcc:
    """An FCC session that reports `address` at once and exits cleanly when waited for."""

    def __init__(self, address: tuple[str, int]) -> None:
        self.child = FakeChild()
        self.address = address
        self.stopped = False
        self.storage_error: str | None = None  # a storage error line "printed" by FCC

    @property
    def pid(self) -> int:
        return NO_PID

    def read_address(self, *, deadline: float) -> tuple[str, int]:
        return self.address

    def probe(self, ip: str, port: int, *, deadline: float) -> None:
        return None

    def wait_exit(self, *, deadline: float) -> None:
        self.child.wait()

    def storage_failure(self, grace: float = 1.0) -> str | None:
        return self.storage_error

    def stop(self) -> None:
        self.stopped = True
        self.child.returncode = -15 if self.child.returncode is None else self.child.returncode


class FakeLauncher:
    """Starts FakeFcc sessions; records each start's working directory."""

    def __init__(self, address: tuple[str, int] = ("10.0.0.5", 4000)) -> None:
        self.address = address
        self.starts: list[Path] = []
        self.sessions: list[FakeFcc] = []

    def __call__(self, argv: Sequence[str], cwd: Path, env: Mapping[str, str]) -> Any:
        self.starts.append(cwd)
        self.sessions.append(FakeFcc(self.address))
        return self.sessions[-1]


def write_pal(pal: Path, items: dict[str, bytes]) -> None:
    """A pal folder as FCC leaves it: flashSim, and every item in BACKUP and WORKING."""
    for copy in ("BACKUP", "WORKING"):
        (pal / copy).mkdir(parents=True)
        for typed, data in items.items():
            (pal / copy / esfs.file_name(typed)).write_bytes(esfs_codec.encode(typed, data, NONCE))
    (pal / "flashSim").write_bytes(b"\xff" * esfs.FLASHSIM_SIZE)


def stage_credentials(ctx: Context) -> Path:
    """Credentials as FCC stores them after an injection (pal, without Parsec)."""
    pal = install.staged_pal(ctx.paths, ctx.profile)
    write_pal(pal, {typed: f"{ctx.serial}-{typed}".encode() for typed in esfs.REQUIRED})
    return pal / "WORKING"


def make_context(tmp_path: Path, client: ScriptedClient, *,
                 network: dict[str, list[str]] | None = None,
                 launcher: FakeLauncher | None = None, **env: str) -> tuple[Context, FakeClock]:
    """A context of fakes under `tmp_path` (serial SN-1, FCC at 127.0.0.1:4000 for the tests
    that start at the request), the network probe answering from `network`."""
    fcc = tmp_path / "fcc"  # preflight only checks that the binary exists and runs
    tmp_path.mkdir(parents=True, exist_ok=True)
    fcc.write_text("#!/bin/sh\nexit 0\n")
    fcc.chmod(0o755)
    settings = load_settings({"root": tmp_path}, {
        "PEP_RETRY_BASE": "1", "PEP_RETRY_CAP": "8", "PEP_SERVER_DEADLINE": "60",
        "PEP_SERIAL": "SN-1", "PEP_INTERFACE": "eth0", "PEP_FCC_COMMAND": str(fcc),
        "PEP_PARSEC": "false", **env})
    clock = FakeClock()
    addresses = {"eth0": ["10.0.0.5"]} if network is None else network

    def probe(interface: str) -> list[str]:
        return list(addresses.get(interface, []))

    ctx = Context(settings=settings, services=SandboxServices(settings.paths),
                  clock=clock,  # type: ignore[arg-type]
                  led=FakeLed(), notifier=Notifier(enabled=False),
                  journal=Journal(settings.paths.journal),
                  client_factory=lambda: client,  # type: ignore[arg-type,return-value]
                  launch_fcc=launcher or FakeLauncher(), probe_network=probe,
                  reboot_at_end=False)
    ctx.serial, ctx.interface, ctx.fcc_address = "SN-1", "eth0", ("127.0.0.1", 4000)
    return ctx, clock
