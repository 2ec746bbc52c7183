"""A testbed: one virtual gateway in its network namespace, the pep server in the other.

Side effects: creates network namespaces and an overlay (below the image cache), installs
the agent into the gateway's root, starts and stops `pep-agent sim server` (from the host's
venv, inside the server's namespace); close() undoes all of it, also after a failure.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from itertools import count
from pathlib import Path
from typing import Any

from e2e_gateway import Gateway
from e2e_image import remove_run, runs_dir
from e2e_install import install_gateway
from e2e_netns import SERVER_ADDRESS, NetPair, create, delete

from pep_agent.sim.harness import wait_for_port_file

# PEP_REAL_FCC=/path/to/elf: the gateway runs that FCC build in place of `sim fcc`.
REAL_FCC_VARIABLE = "PEP_REAL_FCC"
SERVER_PORT = 5151
SERVER_START_TIMEOUT = 30.0
_numbers = count(1)


def real_fcc() -> Path | None:
    """The real FCC build given in PEP_REAL_FCC, checked; None when the variable is unset."""
    given = os.environ.get(REAL_FCC_VARIABLE, "")
    if not given:
        return None
    path = Path(given)
    if not path.is_file() or not os.access(path, os.X_OK):
        raise RuntimeError(f"{REAL_FCC_VARIABLE}={given} is not an executable file")
    with path.open("rb") as elf:
        if elf.read(4) != b"\x7fELF":
            raise RuntimeError(f"{REAL_FCC_VARIABLE}={given} is not an ELF executable")
    return path


class Testbed:
    """A gateway in one namespace, the simulated pep server in the other.

    The overlay lives below the image cache (runs/TAG), not in pytest's tmp dir: pytest
    prunes old tmp dirs at start-up, which must never reach into a mounted overlay of a run
    still going. Logs are copied to `logs` (the test's tmp dir) when the testbed closes.
    """

    __test__ = False

    def __init__(self, logs: Path, base: Path, wheel: Path, serial: str, *, pip: bool = False,
                 edge_core_in_etc: bool = False, settings: dict[str, str] | None = None
                 ) -> None:
        self.logs = logs
        self.install_options = {"pip": pip, "edge_core_in_etc": edge_core_in_etc}
        self.serial = serial
        self.tag = f"{os.getpid() % 100000}{next(_numbers)}"
        self.work = runs_dir() / f"{os.getpid()}-{self.tag}"
        self.base = base
        self.wheel = wheel
        self.net: NetPair | None = None
        self.gateway: Gateway | None = None
        self.server: subprocess.Popen[bytes] | None = None
        self.server_log = self.work / "server.log"
        self.server_ip = SERVER_ADDRESS
        self.settings = {
            "PEP_PROFILE": "lmp",
            "PEP_SERVER_URL": f"http://{SERVER_ADDRESS}:{SERVER_PORT}",
            "PEP_SERIAL": serial,
            "PEP_FCC_COMMAND": "/usr/local/sbin/fcc-with-probe",
            "PEP_PARSEC": "false",
            "PEP_LED_BACKEND": "sysfs",
            "PEP_LED_DIR": "/var/lib/fake-leds",
            "PEP_LED_NAME": "status",
            "PEP_RETRY_BASE": "1",
            "PEP_RETRY_CAP": "3",
            "PEP_VERIFY_TIMEOUT": "120",
            **(settings or {}),
        }

    def set_up(self) -> None:
        """Namespaces, overlay, the agent installed; close() undoes whatever got done."""
        self.net = create(self.tag)
        self.gateway = Gateway(f"pepgw-{self.tag}", self.base, self.work / "gateway",
                               self.net.gateway_ns_path)
        self.gateway.mount()
        install_gateway(self.gateway.root, self.wheel, f"pepgw-{self.tag}", self.settings,
                        real_fcc=real_fcc(), **self.install_options)

    @property
    def gw(self) -> Gateway:
        assert self.gateway is not None, "testbed not set up"
        return self.gateway

    def start_server(self) -> None:
        """`pep-agent sim server` from the host's venv, inside the server's namespace."""
        assert self.server is None or self.server.poll() is not None
        log = open(self.server_log, "ab")  # noqa: SIM115 - the child keeps it
        assert self.net is not None
        port_file = self.work / "server.port"
        port_file.unlink(missing_ok=True)
        argv = ["ip", "netns", "exec", self.net.server_ns, sys.executable,
                "-m", "pep_agent", "sim", "server", "--host", self.net.server_ip,
                "--port", str(SERVER_PORT), "--db", str(self.work / "server.sqlite"),
                "--port-file", str(port_file)]
        server = self.server = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                                stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        try:
            wait_for_port_file(port_file, alive=lambda: server.poll() is None,
                               timeout=SERVER_START_TIMEOUT)
        except RuntimeError as e:
            raise RuntimeError(f"the pep server did not start ({e}); see {self.server_log}"
                               ) from None

    def server_call(self, method: str, path: str, body: dict[str, Any] | None = None
                    ) -> tuple[int, str]:
        """One request to the pep server, from inside its namespace: (status, body text)."""
        assert self.net is not None
        script = (
            "import sys, urllib.request, urllib.error\n"
            "data = sys.argv[3].encode() or None\n"
            "req = urllib.request.Request(sys.argv[2], data=data, method=sys.argv[1],\n"
            "                             headers={'Content-Type': 'application/json'})\n"
            "try:\n"
            "    r = urllib.request.urlopen(req, timeout=10)\n"
            "    print(r.status); print(r.read().decode())\n"
            "except urllib.error.HTTPError as e:\n"
            "    print(e.code); print(e.read().decode())\n")
        url = f"http://{self.net.server_ip}:{SERVER_PORT}{path}"
        out = subprocess.run(
            ["ip", "netns", "exec", self.net.server_ns, sys.executable, "-c", script, method,
             url, json.dumps(body) if body is not None else ""],
            capture_output=True, text=True, timeout=30, check=True, stdin=subprocess.DEVNULL)
        status, _, text = out.stdout.partition("\n")
        return int(status), text.strip()

    def set_faults(self, **knobs: float) -> None:
        status, text = self.server_call("POST", "/_sim/faults", knobs)
        assert status == 200, text

    def identity_requests(self) -> int:
        """How many identity requests the server has logged."""
        status, text = self.server_call("GET", "/v3/requestLog")
        assert status == 200, text
        return sum(1 for entry in json.loads(text) if "/v3/identity" in json.dumps(entry))

    def stop_server(self) -> None:
        if self.server is not None and self.server.poll() is None:
            # Our own child; its process group holds only what it started.
            os.killpg(self.server.pid, signal.SIGTERM)
            try:
                self.server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.server.pid, signal.SIGKILL)
                self.server.wait(timeout=15)
        self.server = None

    def kill_server(self) -> None:
        """The server dies at once (SIGKILL): no clean-up of a request it was serving."""
        assert self.server is not None and self.server.poll() is None
        # Our own child; its process group holds only what it started.
        os.killpg(self.server.pid, signal.SIGKILL)
        self.server.wait(timeout=15)
        self.server = None

    def close(self) -> None:
        try:
            self.stop_server()
        finally:
            try:
                if self.gateway is not None:
                    self.gateway.close()
            finally:
                if self.net is not None:
                    delete(self.net)
                self._keep_logs()
                remove_run(self.work)

    def _keep_logs(self) -> None:
        for log in [*self.work.glob("*.log"), *self.work.glob("gateway/*.log")]:
            shutil.copy2(log, self.logs / log.name)
        journal = self.work / "gateway/upper/var/log/journal"
        if journal.is_dir():
            shutil.copytree(journal, self.logs / "journal", dirs_exist_ok=True)
