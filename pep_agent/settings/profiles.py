"""Platform profiles: where each gateway family keeps FCC, credentials and identity.

No side effects.

Facts from the public meta-edge, meta-pelion-edge, snap and Debian packaging. Where a real
gateway disagrees, settings override these fields: the FCC binary (PEP_FCC_COMMAND), the
state directory (PEP_STATE_DIR), edge-core's status URL (PEP_STATUS_URL) and the LED backend
(PEP_LED_BACKEND); config.py fills those settings from the profile when they are not given.
The credential and identity places, the Parsec state, the units and extra_clear are the
profile's alone; tests check the agent's systemd unit against the state directories.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pep_agent.errors import ConfigError


@dataclass(frozen=True)
class Profile:
    name: str
    fcc_binary: str
    identity_json: str
    mcc_config: str
    edge_core_unit: str
    identity_unit: str
    status_url: str
    # The agent's journal, marker and lock: on the partition that holds the identity, which
    # survives reboots even where /var/lib is in RAM.
    state_dir: str
    extra_clear: tuple[str, ...] = field(default_factory=tuple)
    led_backend: str = "none"
    # Parsec+TPM gateways: the units that hold the keys, and the state reprovision sets aside
    # (Parsec's and the software TPM's, in one folder). The upstream reprovisioning steps give
    # these for LmP; no other layout is known, so every profile shares them.
    parsec_unit: str = "parsec.service"
    swtpm_unit: str = "swtpm.service"
    parsec_state: str = "/userdata/parsec"


_LMP = Profile(
    name="lmp",
    fcc_binary="/edge/system/bin/factory-configurator-client-example",
    identity_json="/userdata/edge_gw_config/identity.json",
    mcc_config="/userdata/mbed/mcc_config",
    edge_core_unit="edge-core.service",
    identity_unit="wait-for-edge-identity.service",
    status_url="http://127.0.0.1:9101/status",
    state_dir="/userdata/pep-agent",
    led_backend="sysfs",
)

PROFILES: dict[str, Profile] = {
    "lmp": _LMP,
    "meta-pelion-edge": Profile(
        name="meta-pelion-edge",
        fcc_binary="/wigwag/wwrelay-utils/I2C/factory-configurator-client-armcompiled.elf",
        identity_json="/userdata/edge_gw_config/identity.json",
        mcc_config="/userdata/mbed/mcc_config",
        edge_core_unit="edge-core.service",
        identity_unit="wait-for-pelion-identity.service",
        status_url="http://127.0.0.1:9101/status",
        state_dir="/userdata/pep-agent",
        extra_clear=(
            "/wigwag/system/lib/bash/relaystatics.sh",
            "/userdata/etc/devicejs/db",
            "/userdata/etc/maestroConfig.db",
        ),
        led_backend="rgb",
    ),
    "snap": Profile(
        name="snap",
        fcc_binary="/snap/pelion-edge/current/wigwag/mbed/factory-configurator-client-example.elf",
        identity_json="/var/snap/pelion-edge/current/userdata/edge_gw_identity/identity.json",
        mcc_config="/var/snap/pelion-edge/current/userdata/mbed/mcc_config",
        edge_core_unit="snap.pelion-edge.edge-core.service",
        identity_unit="snap.pelion-edge.wait-for-pelion-identity.service",
        status_url="http://127.0.0.1:8081/status",
        state_dir="/var/snap/pelion-edge/current/userdata/pep-agent",
    ),
    "debian": Profile(
        name="debian",
        fcc_binary="/usr/bin/factory-configurator-client-example.elf",
        identity_json="/var/lib/pelion/edge_gw_config/identity.json",
        mcc_config="/var/lib/pelion/mbed/mcc_config",
        edge_core_unit="edge-core.service",
        identity_unit="wait-for-pelion-identity.service",
        status_url="http://127.0.0.1:9101/status",
        state_dir="/var/lib/pelion/pep-agent",
    ),
}


def get_profile(name: str) -> Profile:
    """The named profile, or a ConfigError listing the known ones."""
    try:
        return PROFILES[name]
    except KeyError:
        known = ", ".join(sorted(PROFILES))
        raise ConfigError(f"unknown profile {name!r}", hint=f"use one of: {known}") from None
