"""Status LEDs: one sysfs LED, a sysfs red/green/blue triplet, an external command, or none.
Which signal each state shows is system/led_signals.py's; here is how it is shown.

Side effects: writes attributes of existing sysfs LED directories (trigger, brightness,
delay_on, delay_off, pattern), reads the `ledConfig` key of identity.json, or runs the
configured LED command. Nothing here ever raises from `show()`: a broken LED is logged as a
warning and provisioning carries on; `show()` returns those problems, so that
`pep-agent led` can fail when the LED could not be driven. Files are never created in the LED
directory, and writes are plain writes because sysfs attributes cannot be replaced by rename.

How failures are signalled on one colour: the kernel `timer` trigger only blinks at a steady
rate, so it cannot say "N blinks, then a pause". The `pattern` trigger (kernel 4.20+,
CONFIG_LEDS_TRIGGER_PATTERN) can, so a failure class is shown as N short blinks (200 ms on,
300 ms off) followed by a 2 s dark pause, repeated; N is the blink code of the exit code in
exit_codes.TABLE. When the LED has no pattern trigger (writing "pattern" to `trigger` is
refused, or no `pattern` attribute appears), the failure falls back to a steady timer blink
with delay_on = N x 200 ms and delay_off = 2000 ms: still distinct per class and readable
from `delay_on`, but not countable by eye. No helper process is left running to fake a
pattern: what the LED shows is entirely in the kernel's hands.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
from pathlib import Path
from typing import Protocol

from pep_agent.errors import ConfigError
from pep_agent.system import proc
from pep_agent.system.led_signals import OFF, RGB, SINGLE, Signal

log = logging.getLogger(__name__)

COMMAND_TIMEOUT = 5.0
CODE_ON_MS = 200
CODE_OFF_MS = 300
CODE_PAUSE_MS = 2000
FALLBACK_ON_MS_PER_BLINK = 200
DEFAULT_MAX_BRIGHTNESS = 255


class Led(Protocol):
    def show(self, state: str) -> list[str]:
        """Display `state`; never raises. Returns the problems met, [] when the LED shows it."""


class _Warnings:
    """Logs each distinct LED problem once as a warning, repeats at debug level."""

    def __init__(self) -> None:
        self._seen: set[str] = set()

    def __call__(self, message: str) -> str:
        if message in self._seen:
            log.debug("LED: %s", message)
        else:
            self._seen.add(message)
            log.warning("LED: %s", message)
        return message


class _SysfsChannel:
    """One LED class device directory (e.g. <leds>/status or <leds>/red)."""

    def __init__(self, path: Path, warn: _Warnings) -> None:
        self.path = path
        self._warn = warn

    def apply(self, signal: Signal) -> list[str]:
        if not self.path.is_dir():
            return [self._warn(f"{self.path} does not exist; LED left alone")]
        try:
            if signal.kind == "off":
                self._solid(0)
            elif signal.kind == "solid":
                self._solid(self._max_brightness())
            elif signal.kind == "blink":
                self._timer(signal.on_ms, signal.off_ms)
            elif not self._pattern(code_pattern(signal.count, self._max_brightness())):
                self._timer(signal.count * FALLBACK_ON_MS_PER_BLINK, CODE_PAUSE_MS)
        except OSError as e:
            return [self._warn(f"cannot drive {self.path}: {e.strerror or e}")]
        return []

    def _solid(self, level: int) -> None:
        self._write("trigger", "none")
        self._write("brightness", str(level))

    def _timer(self, on_ms: int, off_ms: int) -> None:
        # The delay files only appear once the timer trigger is active.
        self._write("trigger", "timer")
        self._write("delay_on", str(on_ms), optional=True)
        self._write("delay_off", str(off_ms), optional=True)

    def _pattern(self, pattern: str) -> bool:
        try:
            self._write("trigger", "pattern")
        except OSError:
            return False  # the kernel rejects a trigger it does not have (EINVAL)
        if not (self.path / "pattern").exists():
            return False
        self._write("pattern", pattern)
        return True

    def _max_brightness(self) -> int:
        try:
            return max(1, int((self.path / "max_brightness").read_text().strip()))
        except (OSError, ValueError):
            return DEFAULT_MAX_BRIGHTNESS

    def _write(self, name: str, value: str, *, optional: bool = False) -> None:
        target = self.path / name
        try:
            # No O_CREAT: a missing attribute must stay missing. sysfs attributes are never
            # links (only the LED directory is), so a link here was planted: refuse it.
            fd = os.open(target, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW)
        except FileNotFoundError:
            if optional:
                log.debug("LED: %s absent, not written", target)
                return
            raise
        try:
            os.write(fd, value.encode())
        finally:
            os.close(fd)


def code_pattern(count: int, level: int) -> str:
    """The `pattern` trigger text for `count` blinks then a pause, with square edges."""
    segments: list[tuple[int, int]] = []
    for i in range(count):
        segments.append((level, CODE_ON_MS))
        segments.append((0, CODE_PAUSE_MS if i == count - 1 else CODE_OFF_MS))
    # A zero-length tuple at the same level makes the step instant instead of a ramp.
    return " ".join(f"{lv} {ms} {lv} 0" for lv, ms in segments)


class SysfsLed:
    """A single-colour LED at <leds_dir>/<name>."""

    def __init__(self, path: Path) -> None:
        self._warn = _Warnings()
        self._channel = _SysfsChannel(path, self._warn)

    def show(self, state: str) -> list[str]:
        signal = SINGLE.get(state)
        if signal is None:
            return [self._warn(f"unknown state {state!r}")]
        return self._channel.apply(signal)


class RgbLed:
    """A red/green/blue triplet <leds_dir>/{red,green,blue}; RBG wiring swaps green and blue."""

    COLOURS = ("red", "green", "blue")

    def __init__(self, leds_dir: Path, identity_json: Path | None,
                 led_config: str | None = None) -> None:
        self._warn = _Warnings()
        self._channels = {c: _SysfsChannel(leds_dir / c, self._warn) for c in self.COLOURS}
        self._identity_json = identity_json
        self._configured = led_config
        self._from_identity: str | None = None

    def led_config(self) -> str:
        """identity.json's ledConfig once that file exists, else the configured value."""
        if self._from_identity is None and self._identity_json is not None:
            self._from_identity = self._read_led_config(self._identity_json)
        return self._from_identity or self._configured or "01"

    def _read_led_config(self, path: Path) -> str | None:
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            # Never echo the content: identity.json holds production identity data.
            self._warn(f"cannot read ledConfig from {path}; using the configured wiring")
            return None
        value = data.get("ledConfig") if isinstance(data, dict) else None
        return value if isinstance(value, str) else "01"

    def show(self, state: str) -> list[str]:
        wanted = RGB.get(state)
        if wanted is None:
            return [self._warn(f"unknown state {state!r}")]
        swap = self.led_config() == "02"
        problems: list[str] = []
        # Dark channels first so that two colours never mix during a change.
        for colour in sorted(self.COLOURS, key=lambda c: c in wanted):
            physical = {"green": "blue", "blue": "green"}.get(colour, colour) if swap else colour
            problems += self._channels[physical].apply(wanted.get(colour, OFF))
        return problems


class CommandLed:
    """Runs `<command> STATE` for boards whose LEDs sit behind a vendor tool or daemon."""

    def __init__(self, argv: list[str]) -> None:
        self._argv = argv

    def show(self, state: str) -> list[str]:
        try:
            proc.run([*self._argv, state], timeout=COMMAND_TIMEOUT)
        except proc.ProcessError as e:
            problem = f"command failed for state {state}: {e}"
            log.warning("LED: %s", problem)
            if e.stderr:
                log.debug("LED: command stderr: %s", e.stderr.strip())
            return [problem]
        return []


class NullLed:
    """No LED on this board."""

    def show(self, state: str) -> list[str]:
        # Not a warning: a board without an LED is a normal configuration.
        return ["no LED is configured (LED backend none)"]


def make_led(backend: str, *, leds_dir: Path, name: str = "status",
             command: str | None = None, identity_json: Path | None = None,
             led_config: str | None = None) -> Led:
    """Build the LED backend named by PEP_LED_BACKEND; raises ConfigError on a bad setting.

    `led_config` is the configured ledConfig, used for RGB wiring until identity.json exists.
    """
    if backend == "sysfs":
        if not name or "/" in name or name in (".", ".."):
            raise ConfigError(f"invalid LED name {name!r}", "set PEP_LED_NAME, e.g. status")
        return SysfsLed(leds_dir / name)
    if backend == "rgb":
        return RgbLed(leds_dir, identity_json, led_config)
    if backend == "command":
        try:
            argv = shlex.split(command or "")
        except ValueError as e:
            raise ConfigError(f"cannot parse the LED command: {e}") from None
        if not argv:
            raise ConfigError("the command LED backend needs a command",
                              "set PEP_LED_COMMAND")
        return CommandLed(argv)
    if backend == "none":
        return NullLed()
    raise ConfigError(f"unknown LED backend {backend!r}", "use sysfs, rgb, command or none")
