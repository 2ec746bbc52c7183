import sys
import time
from pathlib import Path

import pytest

from pep_agent.errors import FccStartError, NetworkError
from pep_agent.gateway.fcc import (
    FccSession,
    check_ip_on_interface,
    fcc_environment,
    parse_fcc_address,
)


def test_parses_the_real_line() -> None:
    assert parse_fcc_address(" Client IP Address and Port :  192.168.1.23:40123") == (
        "192.168.1.23", 40123)


def test_ignores_banner_and_colour_codes() -> None:
    assert parse_fcc_address("\x1b[32m[INFO][fcc]: Application ready. Build at: x\x1b[0m") is None
    assert parse_fcc_address("\x1b[0m Client IP Address and Port :  10.0.0.5:1024\x1b[0m") == (
        "10.0.0.5", 1024)


@pytest.mark.parametrize("line", [
    " Client IP Address and Port :  999.1.1.1:4000",
    " Client IP Address and Port :  10.0.0.1:0",
    " Client IP Address and Port :  10.0.0.1:70000",
])
def test_an_unusable_address_line_is_refused(line: str) -> None:
    with pytest.raises(FccStartError) as e:
        parse_fcc_address("\x1b[0m" + line)
    assert line.strip() in e.value.message and e.value.hint


@pytest.mark.parametrize("line", [
    " Client IP Address and Port :  garbage",
    "Client is waiting for incoming connection...",
])
def test_rejects_garbage(line: str) -> None:
    assert parse_fcc_address(line) is None


def test_ip_must_be_on_the_interface() -> None:
    check_ip_on_interface("10.0.0.5", "eth0", ["10.0.0.5"])
    with pytest.raises(NetworkError) as e:
        check_ip_on_interface("10.0.0.6", "eth0", ["10.0.0.5"])
    assert "10.0.0.6" in e.value.message and "eth0 now has 10.0.0.5" in e.value.message
    assert "address changed" in e.value.message
    assert "ETHERNET_LINUX_IFACE_NAME" not in (e.value.hint or "")
    assert "run again" in (e.value.hint or "") and "static" in (e.value.hint or "")


@pytest.mark.spawns
def test_a_port_out_of_range_stops_the_wait_at_once(tmp_path: Path) -> None:
    """A real child printing port 70000 and then staying up: refused at once, not after the
    start timeout (FCC prints its address once)."""
    script = ("import sys, time; print(' Client IP Address and Port :  127.0.0.1:70000', "
              "flush=True); time.sleep(30)")
    session = FccSession.start([sys.executable, "-c", script], cwd=tmp_path, env={})
    try:
        started = time.monotonic()
        with pytest.raises(FccStartError, match="70000"):
            session.read_address(deadline=time.monotonic() + 20)
        assert time.monotonic() - started < 10
    finally:
        session.stop()


def test_environment() -> None:
    env = fcc_environment("wlan0", "/dev/urandom", {"PATH": "/bin"})
    assert env == {"PATH": "/bin", "ETHERNET_LINUX_IFACE_NAME": "wlan0",
                   "ENTROPYSOURCE": "/dev/urandom"}
    assert "ENTROPYSOURCE" not in fcc_environment("eth0", None, {})


def test_exchange_hint_matches_what_fcc_printed() -> None:
    from pep_agent.gateway.fcc import exchange_hint

    done = ["Storage is erased", "Successfully processed comm message",
            "\x1b[32mSuccessfully completed factory flow\x1b[0m"]
    hung = exchange_hint(done, None)
    assert "printed 'Successfully completed factory flow' but did not exit" in hung
    assert "did not complete" not in hung and "resumes" in hung
    assert "exited with status 3" in exchange_hint(done, 3)
    assert "never reported a completed factory flow" in exchange_hint(done[:2], None)
    nothing = exchange_hint(["Client is waiting for incoming connection..."], 1)
    assert "did not complete the factory exchange" in nothing and "exit 22" in nothing


# What the real FCC 4.10.0 printed on a file system without room for its items (then it
# crashed with SIGSEGV), and what it prints on success.
REAL_STORAGE_ERROR = ("\x1b[31m[ERR ][esfs]: esfs_copy_file() - pal_fsFclose() for dst file "
                      "failed with pal_status = 0xfc000010\x1b[0m")


@pytest.mark.spawns
def test_fccs_first_storage_error_is_kept(tmp_path: Path) -> None:
    lines = ["Storage is erased", "Finished generating random from /dev/urandom.",
             REAL_STORAGE_ERROR, "\x1b[31m[ERR ][fcc ]: later, pal_status = 0xfc000004\x1b[0m"]
    script = "import sys\nfor line in sys.argv[1:]:\n    print(line)\nsys.exit(3)"
    session = FccSession.start([sys.executable, "-c", script, *lines], cwd=tmp_path, env={})
    try:
        assert session.storage_failure(grace=30) == REAL_STORAGE_ERROR[5:-4]
    finally:
        session.stop()


@pytest.mark.parametrize("line", [
    "\x1b[32m[INFO][fcc ]: Storage is erased\x1b[0m",
    "Successfully processed comm message",
    "\x1b[31m[ERR ][fcc ]: Failed to process data (status 0xfc000010 elsewhere)\x1b[0m",
    "\x1b[31m[ERR ][PAL ]: pal_status = 0xfb000003\x1b[0m",  # a network error, not storage
])
@pytest.mark.spawns
def test_other_lines_are_no_storage_error(tmp_path: Path, line: str) -> None:
    script = "import sys\nprint(sys.argv[1])"
    session = FccSession.start([sys.executable, "-c", script, line], cwd=tmp_path, env={})
    try:
        assert session.storage_failure(grace=30) is None
    finally:
        session.stop()
