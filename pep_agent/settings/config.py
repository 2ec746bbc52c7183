"""Settings: built-in defaults ← env file ← environment ← CLI options; then the profile.

Each field `x` comes from the last source that sets it: the dataclass default, `PEP_X` in the
env file (`<root>/etc/default/pep-agent`), `PEP_X` in the environment, the command line. The
platform profile (PEP_PROFILE) then fills the fields that name no value of their own (LED
backend and directory, edge-core's status URL), so that Settings carry the effective values;
its other places (FCC, credentials, units, state directory) are read from the profile.

Side effects: reads the env file (envfile.py) and the process environment; a `PEP_*` name
in the environment that is no setting is a warning (the log, or stderr before logging is set
up).
Every value is checked before any command changes anything, at load time (the serial by
serials.py, the identity request's size by identity_query.py) except the LED's backend, name
and command, which system/leds.py checks when a command builds its LED (as a run builds its
context, before its first step). A bad value is a ConfigError (exit 3); the load-time checks
name the variable, and for the env file the file and its line.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import math
import os
import re
import shlex
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Optional, get_type_hints

from pep_agent.errors import ConfigError
from pep_agent.settings.envfile import ENV_PREFIX, env_name, read_env_file
from pep_agent.settings.identity_query import check_request_size
from pep_agent.settings.paths import Paths
from pep_agent.settings.profiles import Profile, get_profile
from pep_agent.settings.serials import normalise_serial
from pep_agent.settings.urls import check_settings


@dataclass
class Settings:
    """Every knob of the agent. Field `x` is also environment variable `PEP_X`."""

    root: Path = Path("/")
    # PEP_PROFILE / --profile name it; the profile itself is held (see profiles.py).
    profile: Profile = field(default_factory=lambda: get_profile("lmp"))
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
    # Unset here: load_settings fills them from the profile when no source gives them (see
    # _FROM_PROFILE).
    led_backend: str = ""
    led_name: str = "status"
    led_dir: Path = Path()
    led_command: Optional[str] = None
    status_url: str = ""
    verify_timeout: float = 300.0
    # Moves the journal, marker and lock (default: the profile's place, see profiles.py).
    state_dir: Optional[str] = None

    @cached_property
    def paths(self) -> Paths:
        """Every location, resolved once (the state directory is chosen at its first use)."""
        return Paths(self.root, state_setting=self.state_dir,
                     profile_state=self.profile.state_dir)

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
        return [str(self.paths.under(self.profile.fcc_binary))]


# systemd time spans: "10s", "15min", "1h 30min", "2d"; anything else is refused before
# journalctl sees it, so that a typo is a configuration error and not a sealing failure.
_INTERVAL = re.compile(r"\d+(\.\d+)?\s*[a-zA-Z]*(\s+\d+(\.\d+)?\s*[a-zA-Z]*)*")


def check_fss_interval(interval: str) -> str:
    """The FSS interval, stripped; ConfigError unless it reads as a systemd time span."""
    value = interval.strip()
    if not value.isascii() or not _INTERVAL.fullmatch(value):
        raise ConfigError(f"invalid FSS interval {_shown(interval)}",
                          hint="use a systemd time span such as 10s, 15min or 1h")
    return value


# Seconds a wait or a timeout may last at most. A week is far beyond any factory use, and far
# below what the clock, sockets and locks accept (1e300 s overflows them mid-run).
MAX_SECONDS = 7 * 24 * 3600.0
MAX_COUNT = 1000
# Zero would make these spin or never wait.
_POSITIVE = frozenset({"retry_base", "http_timeout", "fcc_start_timeout", "fcc_exit_timeout"})
_HINTS = get_type_hints(Settings)
_FIELDS = {f.name for f in fields(Settings)}


def _shown(raw: object) -> str:
    """A value for an error message: quoted and short, on one line."""
    text = repr(raw)
    return text if len(text) <= 60 else text[:57] + "..."


def _convert(name: str, raw: Any, label: str) -> Any:
    """`raw` (a string from a file or the environment, or a typed CLI value) checked and typed.

    `label` says where it came from, for the error message.
    """
    if raw is None:
        return None
    kind = _HINTS[name]
    base = next(a for a in getattr(kind, "__args__", (kind,)) if a is not type(None))
    if isinstance(raw, str):
        if "\x00" in raw:
            raise ConfigError(f"{label}: contains a NUL byte")
        value = _parse(base, raw, label)
        if value is None and kind is str:
            value = raw
    else:
        value = raw
    if base in (int, float) and value is not None:
        _check_number(name, value, label, raw)
    return value


def _parse(base: Any, raw: str, label: str) -> Any:
    if base is bool:
        low = raw.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{label}={_shown(raw)} is not a boolean (true/false)")
    if base in (int, float):
        try:
            return base(raw)
        except ValueError:
            what = "a whole number" if base is int else "a number"
            raise ConfigError(f"{label}={_shown(raw)} is not {what}") from None
    if base is Path:
        return Path(raw) if raw else None
    if base is Profile:
        return get_profile(raw.strip())
    return raw or None


def _check_number(name: str, value: Any, label: str, raw: Any) -> None:
    high = MAX_COUNT if _HINTS[name] is int else MAX_SECONDS
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{label}={_shown(raw)} is not a number")
    # nan or inf would make a deadline or a backoff never end.
    if not math.isfinite(value) or not 0 <= value <= high:
        raise ConfigError(f"{label}={_shown(raw)} must be a finite number from 0 to {high:g}")
    if value == 0 and name in _POSITIVE:
        raise ConfigError(f"{label}={_shown(raw)} must be greater than 0")


def load_settings(cli: Mapping[str, Any] | None = None,
                  environ: Mapping[str, str] | None = None) -> Settings:
    """Merge every source; CLI values of None mean "not given"."""
    cli = {k: v for k, v in (cli or {}).items() if v is not None}
    environ = os.environ if environ is None else environ
    unknown = set(cli) - _FIELDS
    if unknown:
        raise ConfigError(f"unknown setting(s): {', '.join(sorted(unknown))}")

    root_raw = cli.get("root") or environ.get(env_name("root")) or "/"
    if "\x00" in str(root_raw):
        raise ConfigError(f"the root {_shown(str(root_raw))} contains a NUL byte")
    root = Path(root_raw)
    merged: dict[str, Any] = {}
    # Where each value came from, for the messages that name it: the option, the variable, or
    # the variable and the env file's line.
    origin: dict[str, str] = {}
    env_file = Paths(root).env_file
    file_values = read_env_file(env_file)
    for key, (_, line) in file_values.items():
        unknown_name = _unknown_name(key)
        if unknown_name:
            raise ConfigError(f"{env_file} line {line}: {unknown_name}", hint=_NAMES_HINT)
    for key in environ:
        unknown_name = _unknown_name(key, _OTHER_VARIABLES)
        if unknown_name:
            _warn(f"environment: {unknown_name}; it is ignored")
    for name in _FIELDS:
        key = env_name(name)
        if key in file_values:
            value, line = file_values[key]
            merged[name] = _convert(name, value, f"{env_file} line {line}: {key}")
            origin[name] = f"{key} in {env_file} line {line}"
        if key in environ:
            merged[name] = _convert(name, environ[key], key)
            origin[name] = key
    for name, value in cli.items():
        merged[name] = _convert(name, value, f"{env_name(name)} (command line)")
        origin[name] = _OPTIONS.get(name, "--" + name.replace("_", "-"))
    merged["root"] = root
    settings = dataclasses.replace(Settings(), **merged)
    if settings.state_dir is not None and not settings.state_dir.startswith("/"):
        raise ConfigError(f"PEP_STATE_DIR={_shown(settings.state_dir)} is not an absolute path",
                          hint="give an absolute directory on the identity's partition "
                               "(the profile's default is there)")
    if settings.parsec not in ("auto", "true", "false"):
        raise ConfigError(f"PEP_PARSEC={_shown(settings.parsec)}: use auto, true or false")
    profile = settings.profile
    for name, default in _FROM_PROFILE.items():
        if not merged.get(name):  # not given, or given empty
            setattr(settings, name, default(profile, settings.paths))
    settings.fss_interval = check_fss_interval(settings.fss_interval)

    def named(name: str) -> str:
        return origin.get(name, env_name(name))

    if settings.serial is not None:
        source = named("serial")
        settings.serial = normalise_serial(
            settings.serial, source,
            hint=f"give the gateway's serial number with {source}, or leave it unset")
    check_settings(settings, named)  # every URL, complete, before anything changes
    check_request_size(settings, named)
    return settings


# The options whose name is not the field's (--no-reboot sets reboot).
_OPTIONS = {"server_url": "--server", "reboot": "--no-reboot", "verify_timeout": "--timeout"}


# Variables named like settings that are read from the environment only: the simulators'
# knobs and the packaging's import recorder.
_OTHER_VARIABLES = frozenset({"PEP_SIM_PARSEC_SOCKET", "PEP_SIM_FCC_RELEASE",
                              "PEP_SIM_FCC_NO_SYNC", "PEP_CLOSURE_RECORD"})
_NAMES_HINT = ("correct the name or remove the line; every setting is listed in the README "
               "(Configuration)")


def _unknown_name(key: str, also: frozenset[str] = frozenset()) -> str | None:
    """What is wrong with `key` when it looks like a setting (PEP_ in any case) and is none:
    a misspelled setting would otherwise be ignored in silence, and the run use its default."""
    if not key.upper().startswith(ENV_PREFIX) or key in also:
        return None
    known = sorted(env_name(name) for name in _FIELDS)
    if key in known:
        return None
    close = difflib.get_close_matches(key.upper(), known, n=1, cutoff=0.75)
    return f"unknown setting {key}" + (f" (did you mean {close[0]}?)" if close else "")


def _warn(text: str) -> None:
    """A warning in the log, or on stderr for a command that sets up no log."""
    log = logging.getLogger("pep_agent")
    if log.hasHandlers():
        log.warning("%s", text)
    else:
        print(f"pep-agent: warning: {text}", file=sys.stderr)


# The settings whose default is the profile's (or the root's) value.
_FROM_PROFILE: dict[str, Callable[[Profile, Paths], Any]] = {
    "led_backend": lambda profile, paths: profile.led_backend,
    "led_dir": lambda profile, paths: paths.leds,
    "status_url": lambda profile, paths: profile.status_url,
}
