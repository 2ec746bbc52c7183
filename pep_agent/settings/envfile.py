"""The env file (`<root>/etc/default/pep-agent`) read as systemd's EnvironmentFile= reads it,
and the name of each setting's variable there and in the environment (`PEP_X` for field `x`).

Side effects: read_env_file reads that one file; nothing else here touches the machine.
The agent and its systemd unit read the same file, so they must agree on every line: what
systemd would read differently (another encoding, a NUL byte, a line that is no assignment)
is a ConfigError (exit 3) naming the file and the line, never a value guessed at.
"""

from __future__ import annotations

import codecs
import re
from pathlib import Path

from pep_agent.errors import ConfigError

ENV_PREFIX = "PEP_"
_KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def env_name(field: str) -> str:
    """The variable that sets the settings field `field`."""
    return ENV_PREFIX + field.upper()


def parse_env_file(text: str, source: str = "the env file") -> dict[str, tuple[str, int]]:
    """KEY=VALUE lines as systemd's EnvironmentFile reads them: comments, quotes, `export`.

    Returns {KEY: (value, line number)}; errors name `source` and the line.
    """
    out: dict[str, tuple[str, int]] = {}
    # Lines end at "\n" only, as systemd reads them; a "\r" before it (a DOS file) is dropped.
    for lineno, raw in enumerate(text.split("\n"), 1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if "\x00" in line:
            raise ConfigError(f"{source} line {lineno}: contains a NUL byte")
        if line.startswith("export "):
            line = line[len("export "):].lstrip()
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not _KEY_RE.fullmatch(key):
            raise ConfigError(f"{source} line {lineno}: expected KEY=VALUE")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        out[key] = (value, lineno)
    return out


def decode_env_file(data: bytes, source: str) -> str:
    """The env file's text; ConfigError naming the line when it is not UTF-8 (systemd reads
    UTF-8 only, so the agent and the service would disagree on anything else)."""
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise ConfigError(f"{source} line 1: UTF-16 text (byte-order mark); save it as UTF-8")
    if data.startswith(codecs.BOM_UTF8):
        raise ConfigError(f"{source} line 1: starts with a byte-order mark; save it as UTF-8 "
                          "without BOM")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise ConfigError(f"{source} line {line}: byte 0x{data[e.start]:02x} is not UTF-8; "
                          "save the file as UTF-8") from None


def read_env_file(path: Path) -> dict[str, tuple[str, int]]:
    """The env file's assignments, {} when it does not exist."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror or type(e).__name__}") from None
    return parse_env_file(decode_env_file(data, str(path)), str(path))
