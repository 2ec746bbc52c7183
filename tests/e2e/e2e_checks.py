"""What the virtual-gateway tests check, shared by their scenarios.

Side effects: none beyond reading the gateway's files and journal and running read-only
commands inside it (systemctl show, journalctl, an HTTP GET to edge-core's status).
"""

from __future__ import annotations

import json
import stat
from typing import Any

from e2e_gateway import Gateway, wait_for
from e2e_install import LED_DIR, LED_NAME

from pep_agent.gateway import esfs
from pep_agent.settings.profiles import Profile, get_profile
from pep_agent.sim import esfs_codec

PROVISION_TIMEOUT = 300.0
VERIFY_TIMEOUT = 180.0
# The places of the lmp profile, which the test gateways use (the .deb's use debian's).
LMP = get_profile("lmp")
IDENTITY = LMP.identity_json
MCC_CONFIG = LMP.mcc_config
STATE_DIR = LMP.state_dir
# The endpoint name as FCC stores it: an ESFS file under a hashed name in pal/WORKING.
ENDPOINT_ITEM = esfs.CONFIG_PREFIX + "mbed.EndpointName"
ENDPOINT_FILE = esfs.file_name(ENDPOINT_ITEM)
PROBE = "pep-e2e-probe"
# What the FCC wrapper saw after asking systemd to start edge-core: held, not masked.
HELD = "edge-core while FCC runs: enabled=enabled active=inactive"
HOLD_DROPIN = "50-pep-agent-hold.conf"
# systemd's catalogue id of "Started <unit>".
UNIT_STARTED = "39f53479d3a045ac8e11786248231fbf"
NOTIFY_REJECTED = "reception only permitted for main PID"


def read(gw: Gateway, path: str) -> str:
    return gw.path(path).read_text(encoding="utf-8").strip()


def endpoint_name(gw: Gateway, working: str = f"{MCC_CONFIG}/WORKING") -> str:
    """The endpoint name in a WORKING folder `sim fcc` wrote (its stand-in encryption)."""
    return esfs_codec.read_item(gw.path(working), ENDPOINT_ITEM).decode()


def led(gw: Gateway) -> dict[str, str]:
    directory = gw.path(LED_DIR) / LED_NAME
    return {name: (directory / name).read_text().strip()
            for name in ("trigger", "brightness", "delay_on", "delay_off")}


def journal_json(gw: Gateway, *args: str) -> list[dict[str, Any]]:
    out = gw.journal("-o", "json", *args)
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def probes(gw: Gateway) -> list[str]:
    return [str(e["MESSAGE"]) for e in journal_json(gw, "-t", PROBE)]


def edge_core_in_boot(gw: Gateway, boot: int) -> tuple[int, int]:
    """In the gateway's `boot`-th boot (1 = first): (edge-core starts, starts held back)."""
    entries = journal_json(gw, "-b", str(boot), "-u", "edge-core.service")
    # A start skipped by a condition is a finished start job too, with the same message id.
    jobs = [str(e.get("MESSAGE", "")) for e in entries if e.get("MESSAGE_ID") == UNIT_STARTED]
    held = sum(1 for m in jobs if "unmet condition" in m and HOLD_DROPIN in m)
    return len(jobs) - held, held


def notify_rejections(gw: Gateway) -> list[str]:
    """systemd's complaints about notifications from a child of the agent."""
    return [str(e["MESSAGE"]) for e in journal_json(gw, "_PID=1")
            if NOTIFY_REJECTED in str(e.get("MESSAGE", ""))]


def edge_core_status(gw: Gateway) -> dict[str, Any]:
    script = ("import json, urllib.request; print(urllib.request.urlopen("
              "'http://127.0.0.1:9101/status', timeout=5).read().decode())")
    return dict(json.loads(gw.run(["python3", "-c", script]).stdout))


def assert_provisioned_files(gw: Gateway, serial: str, profile: Profile = LMP) -> None:
    identity = gw.path(profile.identity_json)
    assert identity.is_file(), "identity.json not installed"
    assert stat.S_IMODE(identity.stat().st_mode) == 0o600
    assert json.loads(identity.read_text())["serialNumber"] == serial
    assert endpoint_name(gw, f"{profile.mcc_config}/WORKING") == serial
    assert read(gw, f"{profile.state_dir}/provisioned") == serial
    # Held with a drop-in in /run, never masked: nothing of the hold outlives the run.
    mask = gw.path("/etc/systemd/system/edge-core.service")
    assert not mask.is_symlink(), "edge-core was masked"


def no_unit_restarts(gw: Gateway) -> None:
    """A first boot with a reachable server never needs systemd to restart the agent."""
    restarts = gw.run(["systemctl", "show", "-P", "NRestarts", "pep-agent.service"],
                      check=False).stdout.strip()
    if restarts not in ("", "0"):
        tail = gw.journal("-u", "pep-agent", "-n", "15", "-q")
        raise AssertionError(f"pep-agent.service was restarted {restarts} time(s):\n{tail}")


def wait_verified(gw: Gateway, serial: str, profile: Profile = LMP) -> None:
    marker = gw.path(f"{profile.state_dir}/verified")
    wait_for(lambda: True if marker.is_file() else None, timeout=VERIFY_TIMEOUT,
             what="the verified marker")
    assert read(gw, f"{profile.state_dir}/verified") == serial
    status = edge_core_status(gw)
    assert (status["status"], status["endpoint-name"]) == ("connected", serial)
    wait_for(lambda: True if gw.unit_property("pep-agent-verify.service", "ActiveState")
             == "inactive" else None, timeout=60, what="pep-agent-verify to end")
    assert gw.unit_property("pep-agent-verify.service", "Result") == "success"
    assert gw.unit_property("pep-agent-verify.service", "ExecMainStatus") == "0"
    # The success LED: solid on.
    shown = led(gw)
    assert (shown["trigger"], shown["brightness"]) == ("none", "255"), shown


def assert_units_ran(gw: Gateway, executable: str) -> None:
    """Both units ran the agent as `executable` (systemd resolves their bare name at start,
    and the journal records the command line it chose)."""
    for unit, verb in (("pep-agent", "provision"), ("pep-agent-verify", "verify")):
        entries = journal_json(gw, "-u", unit, "_COMM=pep-agent")
        lines = {str(e.get("_CMDLINE")) for e in entries}
        assert lines == {f"/usr/bin/python3 {executable} {verb}"}, lines
