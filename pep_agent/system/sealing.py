"""journald forward-secure sealing: generate the keys and hand back the verification key.

Side effects: on a gateway (root /), runs `journalctl --setup-keys --force`, which replaces the
journal's sealing key (the file `fss` in the persistent journal directory) through the process
funnel. The verification key it prints is a secret: it is returned to the caller and never
logged, and no error raised here carries journalctl's standard output.

Under any other root (the sandbox) journalctl is never run: its sealing key belongs to the
host. Like the sandbox service manager, the sandbox appends the command it would have run to
the sandbox log under the root and returns SANDBOX_KEY, a fake key that no journalctl prints,
so that the demo and the tests still run the whole flow, and a record made with it on a
server is recognisable at a glance.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence

from pep_agent.errors import InstallError, SealingError
from pep_agent.settings.config import check_fss_interval
from pep_agent.settings.paths import Paths
from pep_agent.system import proc
from pep_agent.system.fsutil import append_line

DEFAULT_TIMEOUT = 60.0  # seeding reads the kernel's entropy pool; allow a slow board
SANDBOX_KEY = "sandbox-fake-sealing-key"
# What journalctl prints: hex groups joined by '-', then '/', then two hex numbers.
_KEY = re.compile(r"^[0-9a-f]+(-[0-9a-f]+)*/[0-9a-f]+-[0-9a-f]+$")
_KEY_LIKE = re.compile(r"[0-9a-f]{6}(-[0-9a-f]{6})+(/[0-9a-f]+-[0-9a-f]+)?")


def setup_keys_argv(interval: str, journalctl: Sequence[str] = ("journalctl",)) -> list[str]:
    """The journalctl command line that (re)generates the sealing keys."""
    return [*journalctl, "--setup-keys", "--force", f"--interval={check_fss_interval(interval)}"]


def setup_keys(interval: str, paths: Paths, *, journalctl: Sequence[str] = ("journalctl",),
               timeout: float = DEFAULT_TIMEOUT) -> str:
    """Generate new sealing keys; return the verification key (first line of stdout).

    In the sandbox, only record the call and return SANDBOX_KEY.
    """
    argv = setup_keys_argv(interval, journalctl)
    if paths.sandboxed:
        _record(paths, argv)
        return SANDBOX_KEY
    try:
        result = proc.run(argv, timeout=timeout, check=False)
    except proc.ProcessError as e:
        # ProcessError holds stdout, which may hold the key: never chain it.
        raise SealingError(f"cannot seal the journal: journalctl {e.reason}",
                           hint=_hint_for(e.reason, "")) from None
    lines = result.stdout.splitlines()
    key = lines[0].strip() if lines else ""
    if result.returncode != 0:
        reason = failure_reason(result.stderr)
        raise SealingError(
            f"cannot seal the journal: journalctl exited with status {result.returncode}"
            + (f" ({reason})" if reason else ""),
            hint=_hint_for(reason, result.stderr))
    if not _KEY.match(key):
        raise SealingError("cannot seal the journal: journalctl printed no verification key",
                           hint="run `journalctl --setup-keys` by hand to see why")
    return key


def _record(paths: Paths, argv: Sequence[str]) -> None:
    """Append `<epoch> <command>` to the sandbox log, as the sandbox service manager does
    (through the same helper, which never writes through a symlink)."""
    try:
        append_line(paths.sandbox_services, f"{time.time():.3f} {' '.join(argv)}\n", mode=0o644)
    except InstallError as e:
        raise SealingError(f"cannot record the sealing call: {e.message}", hint=e.hint) from None
    except OSError as e:
        raise SealingError(f"cannot record the sealing call in {paths.sandbox_services}: "
                           f"{e.strerror or type(e).__name__}", hint="") from None


def failure_reason(stderr: str) -> str:
    """The line of journalctl's stderr that says why it failed, with key-like text removed."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    useful = [ln for ln in lines if not ln.startswith(("Generating ", "Unable to set file "))]
    chosen = (useful or lines or [""])[-1]
    return _KEY_LIKE.sub("[redacted]", chosen)[:200]


def _hint_for(reason: str, stderr: str) -> str | None:
    text = f"{reason}\n{stderr}"
    if "command not found" in text:
        return "journalctl is not installed on this system"
    if ("persistent" in text or "No such file or directory" in text
            or "not a directory" in text):
        return ("journald keeps no persistent journal: set Storage=persistent in "
                "journald.conf, restart systemd-journald, then try again")
    if "Permission denied" in text or "Operation not permitted" in text:
        return "sealing keys can only be set up as root"
    if "interval" in text:
        return "use a systemd time span such as 10s, 15min or 1h"
    return None  # the class's default hint
