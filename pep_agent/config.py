"""Settings: built-in defaults ← platform profile ← env file ← environment ← CLI options.

Side effects: reads the env file (`<root>/etc/default/pep-agent`) and the process environment.
"""

from __future__ import annotations

import dataclasses
import math
import os
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Optional, Union, get_type_hints

from pep_agent.errors import ConfigError
from pep_agent.paths import Paths
from pep_agent.profiles import Profile, get_profile
from pep_agent.urls import check_settings

ENV_PREFIX = "PEP_"


@dataclass
class Settings:
    """Every knob of the agent. Field `x` is also environment variable `PEP_X`."""

    root: Path = Path("/")
    profile: str = "lmp"
    server_url: str = "http://localhost:5151"
    serial: Optional[str] = None
    serial_command: Optional[str] = None
    interface: Optional[str] = None
    fcc_command: Optional[str] = None
    entropy_source: Optional[str] = None
    parsec: str = "auto"  # auto | true | false
    reboot: bool = True
    # The reference pep-cli's defaults for the identity request.
    api_address: str = "https://api.us-east-1.mbedcloud.com"
    gateway_services_address: str = "https://gateways.us-east-1.mbedcloud.com"
    hardware_version: str = "izuma-edge-gateway"
    radio_config: str = "00"
    led_config: str = "01"
    category: str = "production"
    fss: bool = False
    fss_interval: str = "10s"
    ca_cert: Optional[Path] = None
    insecure: bool = False
    # The server injects FCC before it answers, so the read timeout covers an injection.
    http_timeout: float = 120.0
    retry_base: float = 1.0
    retry_cap: float = 30.0
    server_deadline: float = 900.0
    network_deadline: float = 120.0
    fcc_start_timeout: float = 30.0
    fcc_exit_timeout: float = 60.0
    injection_retries: int = 2
    led_backend: Optional[str] = None
    led_name: str = "status"
    led_dir: Optional[Path] = None
    led_command: Optional[str] = None
    status_url: Optional[str] = None
    verify_timeout: float = 300.0

    @property
    def paths(self) -> Paths:
        return Paths(self.root)

    @property
    def platform(self) -> Profile:
        return get_profile(self.profile)

    def fcc_argv(self) -> list[str]:
        """The FCC command line: --fcc-command, else the profile's binary under the root."""
        if self.fcc_command:
            try:
                argv = shlex.split(self.fcc_command)
            except ValueError as e:
                raise ConfigError(f"cannot parse the FCC command: {e}") from None
            if not argv:
                raise ConfigError("the FCC command is empty")
            return argv
        return [str(self.paths.under(self.platform.fcc_binary))]

    def identity_query(self, serial: str, ip: str, port: int,
                       verification_key: str) -> dict[str, str]:
        """The /v3/identity query, in the reference CLI's field order."""
        return {
            "ip": ip,
            "port": str(port),
            "serialNumber": serial,
            "apiAddress": self.api_address,
            "gatewayServicesAddress": self.gateway_services_address,
            "hardwareVersion": self.hardware_version,
            "radioConfig": self.radio_config,
            "ledConfig": self.led_config,
            "category": self.category,
            "verificationKey": verification_key,
        }


def env_name(field: str) -> str:
    return ENV_PREFIX + field.upper()


def parse_env_file(text: str) -> dict[str, str]:
    """KEY=VALUE lines as systemd's EnvironmentFile reads them: comments, quotes, `export`."""
    out: dict[str, str] = {}
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("export "):
            line = line[len("export "):].lstrip()
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not key.replace("_", "").isalnum():
            raise ConfigError(f"env file line {lineno}: expected KEY=VALUE")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        out[key] = value
    return out


_POSITIVE = frozenset({"retry_base", "http_timeout", "fcc_start_timeout", "fcc_exit_timeout"})
_HINTS = get_type_hints(Settings)
_FIELDS = {f.name for f in fields(Settings)}


def _convert(name: str, raw: Any) -> Any:
    if raw is None:
        return None
    kind = _HINTS[name]
    base = next(a for a in getattr(kind, "__args__", (kind,)) if a is not type(None))
    if not isinstance(raw, str):
        return raw
    if base is bool:
        low = raw.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{env_name(name)}={raw!r} is not a boolean (true/false)")
    if base in (int, float):
        try:
            value = base(raw)
        except ValueError:
            raise ConfigError(f"{env_name(name)}={raw!r} is not a number") from None
        # nan or inf would make a deadline or a backoff never end.
        if not math.isfinite(value) or value < 0:
            raise ConfigError(f"{env_name(name)}={raw!r} must be a finite number >= 0")
        if value == 0 and name in _POSITIVE:
            raise ConfigError(f"{env_name(name)}={raw!r} must be greater than 0")
        return value
    if base is Path:
        return Path(raw) if raw else None
    return raw if raw != "" or kind is str else None


def load_settings(cli: Mapping[str, Any] | None = None,
                  environ: Mapping[str, str] | None = None) -> Settings:
    """Merge every source; CLI values of None mean "not given"."""
    cli = {k: v for k, v in (cli or {}).items() if v is not None}
    environ = os.environ if environ is None else environ
    unknown = set(cli) - _FIELDS
    if unknown:
        raise ConfigError(f"unknown setting(s): {', '.join(sorted(unknown))}")

    root = Path(cli.get("root") or environ.get(env_name("root")) or "/")
    merged: dict[str, Any] = {}
    env_file = Paths(root).env_file
    try:
        file_values = parse_env_file(env_file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        file_values = {}
    except OSError as e:
        raise ConfigError(f"cannot read {env_file}: {e.strerror}") from None
    for source in (file_values, environ):
        for name in _FIELDS:
            if env_name(name) in source:
                merged[name] = _convert(name, source[env_name(name)])
    for name, value in cli.items():
        merged[name] = _convert(name, value)
    merged["root"] = root
    settings = dataclasses.replace(Settings(), **merged)
    if settings.parsec not in ("auto", "true", "false"):
        raise ConfigError(f"PEP_PARSEC={settings.parsec!r}: use auto, true or false")
    settings.platform  # noqa: B018 - validates the profile name early
    check_settings(settings)  # every URL, complete, before anything changes
    return settings


def settings_as_dict(settings: Settings) -> dict[str, Union[str, float, bool, None]]:
    """Settings for display (status, debug logs); nothing here is secret."""
    return {f.name: (str(v) if isinstance(v := getattr(settings, f.name), Path) else v)
            for f in fields(Settings)}
