"""netinfo against the kernel: a network namespace of the test's own whose loopback holds two
more addresses, one under an alias label, and this machine compared with what `ip` reports;
and the routing table parser."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pep_agent.errors import NetworkError
from pep_agent.system import netinfo

REPO = Path(__file__).resolve().parents[2]

# Runs inside the namespace: what netinfo says, as JSON.
PROBE = """
import json
from pep_agent.system import netinfo
from pep_agent.errors import NetworkError
out = {"lo": netinfo.interface_ipv4("lo"),
       "of_alias": netinfo.interface_of_address("10.77.0.9"),
       "of_none": netinfo.interface_of_address("10.99.99.99"),
       "src": netinfo.route_source_address("10.77.0.200", 9)}
try:
    netinfo.interface_ipv4("nope0")
except NetworkError as e:
    out["missing"] = str(e)
print(json.dumps(out))
"""

# Loopback only: a dummy or veth device needs kernel modules a container may lack.
SETUP = ("ip link set lo up && ip addr add 10.77.0.5/24 dev lo && "
         "ip addr add 10.77.0.9/24 dev lo label lo:1 && ")


def _can_unshare() -> bool:
    if os.geteuid() != 0 or shutil.which("unshare") is None or shutil.which("ip") is None:
        return False
    done = subprocess.run(["unshare", "--net", "true"], capture_output=True, timeout=10,
                          check=False)
    return done.returncode == 0


@pytest.mark.spawns
@pytest.mark.skipif(not _can_unshare(), reason="needs root, unshare and ip for a network "
                    "namespace of its own")
def test_addresses_in_a_namespace_of_our_own() -> None:
    done = subprocess.run(
        ["unshare", "--net", "sh", "-c", SETUP + 'exec "$0" -c "$1"', sys.executable, PROBE],
        capture_output=True, text=True, timeout=30, check=False, cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    # The alias, listed by the kernel under its label lo:1, belongs to lo.
    assert sorted(seen["lo"]) == ["10.77.0.5", "10.77.0.9", "127.0.0.1"]
    assert seen["of_alias"] == "lo"
    assert seen["of_none"] is None
    assert seen["src"] == "10.77.0.5"
    assert "does not exist" in seen["missing"]


@pytest.mark.spawns
def test_this_machine_agrees_with_ip() -> None:
    if shutil.which("ip") is None:
        pytest.skip("no ip command to compare with")
    listed = subprocess.run(["ip", "-4", "-o", "addr", "show"], capture_output=True, text=True,
                            timeout=10, check=True).stdout.splitlines()
    for line in listed:
        fields = line.split()
        device, address = fields[1].split("@")[0], fields[3].split("/")[0]
        assert address in netinfo.interface_ipv4(device)
        assert netinfo.interface_of_address(address) is not None


def test_a_missing_interface_is_a_network_error() -> None:
    with pytest.raises(NetworkError, match="does not exist"):
        netinfo.interface_ipv4("no-such-if0")


ROUTES = """Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\tMTU\tWindow\tIRTT
eth1\t00000000\t0102A8C0\t0003\t0\t0\t600\t00000000\t0\t0\t0
wlan0\t00000000\t0101A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0
eth0\t00000000\t0100000A\t0002\t0\t0\t10\t00000000\t0\t0\t0
eth0\t0000000A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
"""


def test_the_default_route_with_the_lowest_metric_that_is_up(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "net").mkdir()
    (tmp_path / "net" / "route").write_text(ROUTES)
    monkeypatch.setattr(netinfo, "HOST_PROC", tmp_path)
    # eth0 has the lowest metric but its route is not up (no RTF_UP); wlan0 wins over eth1.
    assert netinfo.default_interface() == "wlan0"
    (tmp_path / "net" / "route").write_text(ROUTES.splitlines()[0] + "\n")
    assert netinfo.default_interface() is None
