"""journald sealing: the real journalctl in a private mount namespace, and failure paths.

The real-journalctl tests mount a tmpfs over /var/log/journal inside their own mount
namespace (unshare -m), so the host's journal and sealing key are never touched.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from pep_agent.errors import ConfigError, SealingError
from pep_agent.exit_codes import Exit
from pep_agent.settings.paths import Paths
from pep_agent.system.sealing import SANDBOX_KEY, failure_reason, setup_keys, setup_keys_argv

HOST = Paths()  # root /: journalctl runs (the fakes and the namespace keep the host safe)
KEY = "ad4f0a-14851d-585ac8-fda3ec/ab3d325-989680"
JOURNAL_DIR = Path("/var/log/journal")


def _can_unshare() -> bool:
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("journalctl"):
        return False
    if not JOURNAL_DIR.is_dir() or not Path("/etc/machine-id").is_file():
        return False
    probe = subprocess.run(["unshare", "-m", "--propagation", "private", "true"],
                           capture_output=True, check=False)
    return probe.returncode == 0


needs_namespace = pytest.mark.skipif(not _can_unshare(),
                                     reason="needs root, unshare and journalctl")


def namespaced_journalctl(tmp_path: Path, *, persistent: bool) -> list[str]:
    """A journalctl that sees an empty tmpfs as /var/log/journal (with the machine dir or not)."""
    script = tmp_path / "journalctl-in-namespace"
    make_dir = 'mkdir -p "/var/log/journal/$(cat /etc/machine-id)" && ' if persistent else ""
    script.write_text(
        "#!/bin/sh\n"
        "exec unshare -m --propagation private sh -c "
        f"'mount -t tmpfs tmpfs /var/log/journal && {make_dir}exec journalctl \"$@\"' sh \"$@\"\n")
    script.chmod(0o755)
    return [str(script)]


def fake_journalctl(tmp_path: Path, body: str) -> list[str]:
    script = tmp_path / "journalctl"
    script.write_text("#!/bin/sh\n" + body + "\n")
    script.chmod(0o755)
    return [str(script)]


def test_argv_is_the_reference_command() -> None:
    assert setup_keys_argv("10s") == [
        "journalctl", "--setup-keys", "--force", "--interval=10s"]
    assert setup_keys_argv(" 1h 30min ", ["j"]) == [
        "j", "--setup-keys", "--force", "--interval=1h 30min"]
    for bad in ("", "ten", "10s; rm", "--force", "-1s"):
        with pytest.raises(ConfigError):
            setup_keys_argv(bad)


@pytest.mark.spawns
@needs_namespace
def test_real_journalctl_returns_the_verification_key(tmp_path: Path) -> None:
    host_before = sorted(p.name for p in JOURNAL_DIR.iterdir())
    key = setup_keys("10s", HOST, journalctl=namespaced_journalctl(tmp_path, persistent=True))
    # seed groups / start-interval: the format journalctl --verify-key expects
    seed, _, rest = key.partition("/")
    assert all(len(g) == 6 and int(g, 16) >= 0 for g in seed.split("-"))
    start, _, interval = rest.partition("-")
    assert int(interval, 16) == 10_000_000  # 10 s in microseconds
    assert int(start, 16) > 0
    assert sorted(p.name for p in JOURNAL_DIR.iterdir()) == host_before


@pytest.mark.spawns
@needs_namespace
def test_real_journalctl_without_persistent_journal_is_exit_23(tmp_path: Path) -> None:
    with pytest.raises(SealingError) as info:
        setup_keys("10s", HOST, journalctl=namespaced_journalctl(tmp_path, persistent=False))
    err = info.value
    assert err.code == Exit.SEALING and int(err.code) == 23
    assert "cannot seal the journal" in err.message
    assert "persistent" in (err.hint or "")


@pytest.mark.spawns
def test_failure_never_carries_the_key(tmp_path: Path) -> None:
    # A journalctl that printed a key and still failed: the key must not leak anywhere.
    argv = fake_journalctl(tmp_path, f'echo "{KEY}"\n'
                                     f'echo "writing key {KEY} failed: Permission denied" >&2\n'
                                     "exit 1")
    with pytest.raises(SealingError) as info:
        setup_keys("10s", HOST, journalctl=argv)
    err = info.value
    assert err.code == Exit.SEALING
    for text in (err.message, err.hint or "", str(err), repr(err.args)):
        assert KEY not in text and KEY.split("/")[0] not in text
    assert "status 1" in err.message and "[redacted]" in err.message
    assert err.hint == "sealing keys can only be set up as root"
    assert err.__cause__ is None and err.__context__ is None


@pytest.mark.spawns
def test_old_systemd_message_gets_the_persistent_hint(tmp_path: Path) -> None:
    argv = fake_journalctl(tmp_path, 'echo "/var/log/journal/0123 is not a directory, must be '
                                     'using persistent logging for FSS." >&2; exit 1')
    with pytest.raises(SealingError) as info:
        setup_keys("10s", HOST, journalctl=argv)
    assert "persistent logging" in info.value.message
    assert "Storage=persistent" in (info.value.hint or "")


@pytest.mark.spawns
def test_success_without_a_key_is_an_error(tmp_path: Path) -> None:
    argv = fake_journalctl(tmp_path, "echo 'something else'")
    with pytest.raises(SealingError, match="no verification key"):
        setup_keys("10s", HOST, journalctl=argv)


@pytest.mark.spawns
def test_first_line_only(tmp_path: Path) -> None:
    argv = fake_journalctl(tmp_path, f'echo "{KEY}"; echo "QR code follows"')
    assert setup_keys("15min", HOST, journalctl=argv) == KEY


@pytest.mark.spawns
def test_missing_journalctl_and_timeout(tmp_path: Path) -> None:
    with pytest.raises(SealingError) as info:
        setup_keys("10s", HOST, journalctl=[str(tmp_path / "absent")])
    assert "not installed" in (info.value.hint or "")
    argv = fake_journalctl(tmp_path, f'echo "{KEY}"; exec sleep 30')
    with pytest.raises(SealingError, match="timed out") as info:
        setup_keys("10s", HOST, journalctl=argv, timeout=0.5)
    assert KEY not in info.value.message
    # The ProcessError behind it holds stdout (the key): it must not show in a traceback.
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_failure_reason_picks_the_error_line() -> None:
    stderr = ("Generating seed...\nGenerating key pair...\n"
              "Failed to open /var/log/journal/x/fss.tmp: No such file or directory\n"
              "Unable to set file attribute 0x1 on n/a, ignoring\n")
    assert failure_reason(stderr).startswith("Failed to open")
    assert failure_reason("") == ""


def test_sandbox_records_the_call_and_never_runs_journalctl(tmp_path: Path) -> None:
    ran = tmp_path / "journalctl-ran"
    argv = fake_journalctl(tmp_path, f'touch "{ran}"; echo "{KEY}"')
    paths = Paths(tmp_path / "root")
    assert setup_keys(" 15min ", paths, journalctl=argv) == SANDBOX_KEY
    assert not ran.exists()
    recorded = paths.sandbox_services.read_text().splitlines()
    assert [line.split(" ", 1)[1] for line in recorded] == [
        f"{argv[0]} --setup-keys --force --interval=15min"]
    with pytest.raises(ConfigError, match="FSS interval"):
        setup_keys("soon", paths, journalctl=argv)
    assert len(paths.sandbox_services.read_text().splitlines()) == 1


def test_sandbox_record_never_writes_through_a_symlink(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere.txt"
    elsewhere.write_text("untouched\n")
    paths = Paths(tmp_path / "root")
    paths.sandbox_services.parent.mkdir(parents=True)
    paths.sandbox_services.symlink_to(elsewhere)
    with pytest.raises(SealingError, match="symbolic link") as e:
        setup_keys("10s", paths, journalctl=("journalctl",))
    assert e.value.code == Exit.SEALING
    assert elsewhere.read_text() == "untouched\n"
