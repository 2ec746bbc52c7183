"""What every measurement shares: the tools under test, a work directory, the simulated server,
one provisioned reference gateway, and the time budget of the whole run.

Side effects: provisions sandbox gateways under the work directory (through `pep-agent
provision` processes, against the simulated server on 127.0.0.1).
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench import children
from bench.simserver import SimServer, Tools

PROVISION_TIMEOUT = 120.0


@dataclass
class Bench:
    tools: Tools
    work: Path
    server: SimServer
    smoke: bool
    deadline: float  # time.monotonic() by which the whole run must be over
    ref_root: Path = Path()
    ref_serial: str = ""
    ref_enrollment: str = ""
    _count: itertools.count[int] = field(default_factory=itertools.count)

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def scratch(self, name: str) -> Path:
        """A fresh directory for one measurement's output files."""
        path = self.work / f"{name}-{next(self._count):04d}"
        path.mkdir(parents=True)
        return path

    def new_gateway(self, tag: str) -> tuple[Path, str]:
        """A root that does not exist yet and a serial the server has never seen."""
        n = next(self._count)
        return self.work / "gateways" / f"{tag}-{n:04d}", f"BENCH-{tag}-{n:04d}"

    def provision_argv(self, root: Path, serial: str, *, head: list[str] | None = None,
                       ) -> list[str]:
        """`pep-agent provision` of a sandbox gateway, as the demo runs it."""
        return [*(head or [self.tools.agent]), "provision", "--root", str(root),
                "--server", self.server.url, "--serial", serial, "--interface", "lo",
                "--fcc-command", self.tools.fcc_command, "--no-reboot"]

    def provision(self, tag: str) -> tuple[children.Finished, Path, str]:
        root, serial = self.new_gateway(tag)
        out = self.scratch(f"provision-{tag}")
        done = children.run(self.provision_argv(root, serial), out_dir=out, name="agent",
                            timeout=min(PROVISION_TIMEOUT, max(self.remaining(), 10.0)),
                            env=self.tools.env())
        return done, root, serial

    def make_reference(self) -> None:
        """The gateway that status and get-enrollment-id are measured against."""
        done, root, serial = self.provision("ref")
        if not done.ok:
            raise RuntimeError(f"the reference gateway did not provision: {done.describe()}")
        self.ref_root, self.ref_serial = root, serial
        self.ref_enrollment = self.server.get("/v3/enrollment-id",
                                              serialNumber=serial).decode().strip()
