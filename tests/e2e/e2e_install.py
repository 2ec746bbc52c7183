"""Lays the agent into a virtual gateway's root the way an image build would.

Side effects: builds the agent's wheel on the host (pip wheel), writes files into the given
root (an overlay, never the cache below it), runs the root's own pip in a chroot for the
pip-installed variant, and enables units there with `systemctl --root`.
"""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
import uuid
import zipfile
from pathlib import Path

from e2e_image import python_site, unpack_wheel

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
GATEWAY_FILES = HERE / "gateway-files"
LED_DIR = "/var/lib/fake-leds"
# Where the wrapper (gateway-files/usr/local/sbin/fcc-with-probe) looks for a real FCC build.
REAL_FCC = "usr/local/sbin/fcc-real"
LED_NAME = "status"
ETC_UNITS = "etc/systemd/system"
EDGE_CORE_UNIT = "edge-core.service"
ENABLED_UNITS = (
    "pep-agent.service",
    "pep-agent-verify.service",
    "edge-core.service",
    "wait-for-edge-identity.service",
    "parsec.service",
    "swtpm.service",
)


def build_wheel(out_dir: Path) -> Path:
    """The agent's wheel, built from a clean copy of the working tree.

    A copy, because setuptools reuses build/ in the source tree, where a module deleted
    since the last build would still be packaged.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    source = out_dir / "source"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(REPO / "pep_agent", source / "pep_agent", ignore=ignore)
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(REPO / name, source / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                    "-w", str(out_dir), str(source)], check=True, timeout=600,
                   stdin=subprocess.DEVNULL, capture_output=True)
    wheels = sorted(out_dir.glob("pep_agent-*.whl"))
    if not wheels:
        raise RuntimeError(f"pip wheel produced no pep_agent wheel in {out_dir}")
    return wheels[-1]


def _console_scripts(wheel: Path) -> dict[str, str]:
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/entry_points.txt"))
        parser = configparser.ConfigParser()
        parser.read_string(archive.read(name).decode())
    return dict(parser["console_scripts"]) if parser.has_section("console_scripts") else {}


def install_agent(root: Path, wheel: Path) -> None:
    """The package in the root's site directory and its console script in /usr/bin."""
    unpack_wheel(wheel, python_site(root))
    for script, target in _console_scripts(wheel).items():
        module, _, func = target.partition(":")
        path = root / "usr/bin" / script
        path.write_text(f"#!/usr/bin/python3\nimport sys\nfrom {module} import {func}\n"
                        f"sys.exit({func}())\n")
        path.chmod(0o755)


def install_agent_with_pip(root: Path, wheel: Path) -> None:
    """As on a Debian-based gateway: the root's own pip installs the wheel into /usr/local."""
    inbox = root / "tmp" / wheel.name
    shutil.copy2(wheel, inbox)
    try:
        subprocess.run(["chroot", str(root), "python3", "-m", "pip", "install", "-q",
                        "--no-deps", "--no-index", "--break-system-packages",
                        "--root-user-action=ignore", f"/tmp/{wheel.name}"],
                       check=True, timeout=300, capture_output=True, stdin=subprocess.DEVNULL,
                       env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"})
    finally:
        inbox.unlink()
    if not (root / "usr/local/bin/pep-agent").is_file():
        raise RuntimeError("pip did not install /usr/local/bin/pep-agent")


def install_units(root: Path, *, edge_core_in_etc: bool = False) -> None:
    """The agent's units as the image installs them, plus the stand-ins for edge-core & co.

    With `edge_core_in_etc`, edge-core's unit file sits in /etc/systemd/system, where snapd
    and hand installs put theirs (and where it cannot be masked).
    """
    unit_dir = root / "usr/lib/systemd/system"
    for source in sorted((REPO / "systemd").glob("*.service")):
        shutil.copy2(source, unit_dir / source.name)
    shutil.copytree(GATEWAY_FILES, root, dirs_exist_ok=True, symlinks=True)
    if edge_core_in_etc:
        (unit_dir / EDGE_CORE_UNIT).rename(root / ETC_UNITS / EDGE_CORE_UNIT)
    # The LED command backend example, as an integrator would install it.
    shutil.copy2(REPO / "example-scripts/led-command.sh", root / "usr/local/bin/led-command.sh")
    # The fake LED tree lives outside /sys, so the integrator's drop-in opens it for writing,
    # as it would for any LED directory outside the agent's default write paths.
    for unit in ("pep-agent.service", "pep-agent-verify.service"):
        dropin = root / "etc/systemd/system" / f"{unit}.d"
        dropin.mkdir(parents=True, exist_ok=True)
        (dropin / "50-fake-leds.conf").write_text(f"[Service]\nReadWritePaths={LED_DIR}\n")
    subprocess.run(["systemctl", f"--root={root}", "enable", *ENABLED_UNITS], check=True,
                   timeout=60, capture_output=True, stdin=subprocess.DEVNULL)


def install_fake_leds(root: Path) -> Path:
    """A sysfs-like LED class directory with one LED; returns it as the host sees it."""
    led = root / LED_DIR.lstrip("/") / LED_NAME
    led.mkdir(parents=True, exist_ok=True)
    for name, value in (("trigger", "none"), ("brightness", "0"), ("max_brightness", "255"),
                        ("delay_on", "0"), ("delay_off", "0")):
        (led / name).write_text(value + "\n")
    return led


def write_env_file(root: Path, settings: dict[str, str]) -> None:
    lines = [f"{key}={value}" for key, value in settings.items()]
    path = root / "etc/default/pep-agent"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("# Written by the virtual-gateway tests.\n" + "\n".join(lines) + "\n")
    path.chmod(0o644)


def install_gateway(root: Path, wheel: Path, hostname: str, settings: dict[str, str], *,
                    pip: bool = False, edge_core_in_etc: bool = False,
                    real_fcc: Path | None = None) -> None:
    """Everything a test gateway needs before its first boot (see the options above).

    With `real_fcc`, that FCC build is what the FCC wrapper runs, in place of `sim fcc`.
    """
    (root / "etc/hostname").write_text(hostname + "\n")
    # A fixed machine id keeps one journal directory across the gateway's reboots.
    (root / "etc/machine-id").write_text(uuid.uuid4().hex + "\n")
    (root / "userdata").mkdir(exist_ok=True)
    if pip:
        install_agent_with_pip(root, wheel)
    else:
        install_agent(root, wheel)
    install_units(root, edge_core_in_etc=edge_core_in_etc)
    install_fake_leds(root)
    write_env_file(root, settings)
    if real_fcc is not None:
        shutil.copy2(real_fcc, root / REAL_FCC)
        (root / REAL_FCC).chmod(0o755)
