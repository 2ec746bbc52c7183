"""The FCC stand-in as a process: its output, the exchange, its storage and its faults."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cbor2
import psutil
import pytest

from pep_agent.gateway import esfs
from pep_agent.sim import bundle, esfs_codec, factory_tool, wire
from tests.simprocs import SimFcc

StartFcc = Callable[..., SimFcc]
PORT_LINE = re.compile(r"^ Client IP Address and Port :  127\.0\.0\.1:(\d+)$")
WAITING = " Client is waiting for incoming connection..."


@pytest.fixture(scope="module")
def settings() -> factory_tool.FactorySettings:
    return factory_tool.FactorySettings.generate()


def inject(fcc: SimFcc, settings: factory_tool.FactorySettings, serial: str = "GW-1",
           timeout: float = 30) -> dict[str, Any]:
    """The real factory-tool exchange against fcc."""
    assert fcc.ip is not None and fcc.port is not None
    items, _ = factory_tool.device_items(settings, serial, "hw")
    message = bundle.encode_request(items, sid="s")
    return factory_tool.exchange(fcc.ip, fcc.port, message, timeout=timeout, sid="s")


def raw_exchange(fcc: SimFcc, frame: bytes) -> tuple[int, bytes | None]:
    assert fcc.ip is not None and fcc.port is not None
    with socket.create_connection((fcc.ip, fcc.port), timeout=30) as sock:
        sock.sendall(frame)
        return wire.read_response(wire.StreamReader(wire.socket_recv(sock, timeout=30)))


def working(fcc: SimFcc) -> Path:
    return fcc.cwd / "pal" / "WORKING"


def test_output_and_listening_address(sim_fcc: StartFcc) -> None:
    fcc = sim_fcc()
    # Its output is read by a thread: the port file can come before the lines are read.
    assert fcc.output.wait_for(re.escape(WAITING), 10) is not None
    lines = fcc.output.lines
    assert lines[0].startswith("Application ready. Build at: ")
    assert "PDMC version 4.13.0" in lines and "In single-partition mode." in lines
    assert any("\x1b[" in line and "[INFO]" in line for line in lines)
    index = next(i for i, line in enumerate(lines) if PORT_LINE.match(line))
    assert fcc.port is not None and 1024 <= fcc.port <= 65534
    # "\n Client IP Address and Port :  %s\n", as the real FCC prints it.
    assert fcc.output.lines[index - 1:index + 3:2] == ["", ""]
    assert fcc.output.lines[index + 2] == WAITING
    # Bound to the interface's address, not to every address.
    process = psutil.Process(fcc.process.pid)
    # net_connections is psutil 6's name; the 5.9 that kirkstone and scarthgap ship calls it
    # connections.
    connections = getattr(process, "net_connections", None) or process.connections
    listening = [c.laddr for c in connections("tcp") if c.status == psutil.CONN_LISTEN]
    assert [(a.ip, a.port) for a in listening] == [("127.0.0.1", fcc.port)]


def test_exchange_stores_every_item_and_exits_0(sim_fcc: StartFcc,
                                                settings: factory_tool.FactorySettings) -> None:
    fcc = sim_fcc()
    stale = working(fcc) / "stale"
    stale.parent.mkdir()  # made by an earlier run: FCC makes it at the first message
    stale.write_text("from a previous run")
    reply = inject(fcc, settings, "GW-ok")
    assert reply["ReturnStatus"] == 0
    assert reply["InfoMessage"] == "The Factory process succeeded\n"
    assert reply["WarningInfo"] == "Item not set:mbed.UpdateAuthCert\n"
    assert reply["SID"] == "s"
    assert fcc.wait_exit(30) == 0
    assert not stale.exists()  # the storage was erased first
    assert esfs_codec.read_item(working(fcc), "CfgParam_mbed.EndpointName") == b"GW-ok"
    assert esfs_codec.read_item(working(fcc), "CfgParam_mbed.UseBootstrap") == b"\1\0\0\0"
    assert esfs.check_pal(working(fcc).parent) == []
    umask = os.umask(0o022)
    os.umask(umask)
    for path in working(fcc).parent.rglob("*"):
        assert path.is_dir() or path.stat().st_mode & 0o777 == 0o644 & ~umask, path
    lines = fcc.output.lines
    tail = lines[lines.index("Storage is erased"):]
    assert tail == ["Storage is erased", "Successfully processed comm message",
                    "Successfully completed factory flow"]


def test_connections_closed_before_a_token_do_not_end_it(
        sim_fcc: StartFcc, settings: factory_tool.FactorySettings) -> None:
    fcc = sim_fcc()
    assert fcc.ip is not None and fcc.port is not None
    with socket.create_connection((fcc.ip, fcc.port), timeout=10):
        pass
    with socket.create_connection((fcc.ip, fcc.port), timeout=10) as sock:
        sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
    assert inject(fcc, settings)["ReturnStatus"] == 0
    assert fcc.wait_exit(30) == 0


def test_garbage_before_the_token_is_skipped(sim_fcc: StartFcc,
                                             settings: factory_tool.FactorySettings) -> None:
    fcc = sim_fcc()
    items, _ = factory_tool.device_items(settings, "GW-g", "hw")
    status, reply = raw_exchange(fcc, b"noise mbedpr!" + wire.frame_request(
        bundle.encode_request(items)))
    assert status == 0 and reply is not None
    assert bundle.decode_response(reply)["ReturnStatus"] == 0
    assert fcc.wait_exit(30) == 0


def test_token_after_a_partial_match_is_missed(sim_fcc: StartFcc,
                                               settings: factory_tool.FactorySettings) -> None:
    fcc = sim_fcc()
    items, _ = factory_tool.device_items(settings, "GW-m", "hw")
    frame = wire.frame_request(bundle.encode_request(items))
    assert fcc.ip is not None and fcc.port is not None
    with socket.create_connection((fcc.ip, fcc.port), timeout=30) as sock:
        sock.sendall(b"m" + frame)  # "mmbedprov": the real FCC's matcher misses this token
        sock.shutdown(socket.SHUT_WR)
        assert sock.recv(100) == b""
    assert fcc.process.poll() is None and "Storage is erased" not in fcc.output.text()
    assert inject(fcc, settings)["ReturnStatus"] == 0
    assert fcc.wait_exit(30) == 0


def _checksum_broken() -> bytes:
    frame = bytearray(wire.frame_request(cbor2.dumps({"SchemeVersion": "0.0.1"})))
    frame[-1] ^= 0xFF
    return bytes(frame)


@pytest.mark.parametrize("frame", [
    _checksum_broken(),
    wire.TOKEN + b"\0\0\0\0",  # length 0
    wire.frame_request(b"\xa1" * 40)[:30],  # body cut short by the peer
], ids=["checksum", "size-0", "short-body"])
def test_framing_errors_get_no_answer_and_exit_1(sim_fcc: StartFcc, frame: bytes) -> None:
    fcc = sim_fcc()
    assert fcc.ip is not None and fcc.port is not None
    with socket.create_connection((fcc.ip, fcc.port), timeout=30) as sock:
        sock.sendall(frame)
        sock.shutdown(socket.SHUT_WR)
        assert sock.recv(100) == b""
    assert fcc.wait_exit(30) == 1


def test_an_error_answer_is_a_completed_exchange(sim_fcc: StartFcc) -> None:
    fcc = sim_fcc()
    message = cbor2.dumps({"SchemeVersion": "0.0.1", "SID": "early", "Keys": [], "Bogus": 1})
    status, reply = raw_exchange(fcc, wire.frame_request(message))
    assert status == 0 and reply is not None
    assert reply[0] == 0xBF  # an indefinite-length map, as tinycbor writes it
    doc = cbor2.loads(reply)
    assert doc["ReturnStatus"] == bundle.FccStatus.BUNDLE_INVALID_GROUP == 23
    assert doc["SID"] == "early"  # read before the error, so echoed
    assert fcc.wait_exit(30) == 0
    assert list(working(fcc).iterdir()) == []


def test_items_are_stored_before_verify_fails(sim_fcc: StartFcc,
                                              settings: factory_tool.FactorySettings) -> None:
    fcc = sim_fcc()
    items, _ = factory_tool.device_items(settings, "GW-v", "hw")
    bad = [i if i.name != "mbed.UTCOffset" else bundle.Item("ConfigParams", i.name, "+0:00")
           for i in items]
    status, reply = raw_exchange(fcc, wire.frame_request(bundle.encode_request(bad, sid="v")))
    assert status == 0 and reply is not None
    doc = cbor2.loads(reply)
    assert (doc["ReturnStatus"], doc["SID"]) == (33, "v")
    assert fcc.wait_exit(30) == 0
    assert esfs_codec.read_item(working(fcc), "CfgParam_mbed.EndpointName") == b"GW-v"


def test_keep_alive_keeps_the_session_for_the_next_message(
        sim_fcc: StartFcc, settings: factory_tool.FactorySettings) -> None:
    fcc = sim_fcc()
    items, _ = factory_tool.device_items(settings, "GW-k", "hw")
    first = cbor2.dumps({"SchemeVersion": "0.0.1", "KpAlvSess": 1, "Verify": 0,
                         "ConfigParams": [{"Name": "mbed.EndpointName", "Data": "GW-k"}]})
    assert fcc.ip is not None and fcc.port is not None
    with socket.create_connection((fcc.ip, fcc.port), timeout=30) as sock:
        reader = wire.StreamReader(wire.socket_recv(sock, timeout=30))
        sock.sendall(wire.frame_request(first))
        status, reply = wire.read_response(reader)
        assert status == 0 and reply is not None and cbor2.loads(reply)["ReturnStatus"] == 0
        assert fcc.wait_exit(1) is None
        rest = [i for i in items if i.name != "mbed.EndpointName"]
        sock.sendall(wire.frame_request(bundle.encode_request(rest)))
        status, reply = wire.read_response(reader)
        assert status == 0 and reply is not None and cbor2.loads(reply)["ReturnStatus"] == 0
    assert fcc.wait_exit(30) == 0
    assert esfs.check_pal(working(fcc).parent) == []


def test_an_error_in_a_kept_alive_session_keeps_it_open(
        sim_fcc: StartFcc, settings: factory_tool.FactorySettings) -> None:
    fcc = sim_fcc()
    items, _ = factory_tool.device_items(settings, "GW-d", "hw")
    # Disable in a message that keeps the session: 35, and FCC waits for the next message.
    first = cbor2.dumps({"SchemeVersion": "0.0.1", "KpAlvSess": 1, "Verify": 0, "Disable": 1})
    assert fcc.ip is not None and fcc.port is not None
    with socket.create_connection((fcc.ip, fcc.port), timeout=30) as sock:
        reader = wire.StreamReader(wire.socket_recv(sock, timeout=30))
        sock.sendall(wire.frame_request(first))
        status, reply = wire.read_response(reader)
        assert status == 0 and reply is not None
        assert cbor2.loads(reply)["ReturnStatus"] == 35
        assert fcc.wait_exit(1) is None
        sock.sendall(wire.frame_request(bundle.encode_request(items)))
        status, reply = wire.read_response(reader)
        assert status == 0 and reply is not None and cbor2.loads(reply)["ReturnStatus"] == 0
    assert fcc.wait_exit(30) == 0


def test_two_frames_in_one_write_answer_the_first_then_reset(
        sim_fcc: StartFcc, settings: factory_tool.FactorySettings) -> None:
    fcc = sim_fcc()
    items, _ = factory_tool.device_items(settings, "GW-2f", "hw")
    frame = wire.frame_request(bundle.encode_request(items))
    assert fcc.ip is not None and fcc.port is not None
    with socket.create_connection((fcc.ip, fcc.port), timeout=30) as sock:
        reader = wire.StreamReader(wire.socket_recv(sock, timeout=30))
        sock.sendall(frame + frame)
        status, reply = wire.read_response(reader)
        assert status == 0 and reply is not None and cbor2.loads(reply)["ReturnStatus"] == 0
        with pytest.raises(ConnectionResetError):
            wire.read_response(reader)
    assert fcc.wait_exit(30) == 0


def test_sigint_ends_it_by_the_signal(sim_fcc: StartFcc) -> None:
    fcc = sim_fcc()
    fcc.process.send_signal(signal.SIGINT)
    assert fcc.wait_exit(30) == -signal.SIGINT


def test_unknown_interface_is_an_error(sim_fcc: StartFcc) -> None:
    fcc = sim_fcc(iface="nosuchif0", wait_port=False)
    code = fcc.wait_exit(30)
    assert code is not None and code != 0
    assert "[ERR]" in fcc.output.text()
    assert "Client IP Address and Port" not in fcc.output.text()


@pytest.mark.skipif(shutil.which("unshare") is None, reason="unshare not installed")
def test_interface_without_ipv4_is_an_error(sim_fcc: StartFcc) -> None:
    probe = subprocess.run(["unshare", "--net", "true"], capture_output=True, timeout=30,
                           check=False)
    if probe.returncode != 0:
        pytest.skip("cannot create a network namespace here")
    # A fresh namespace (gone with the process) has a loopback without any address.
    fcc = sim_fcc(iface="lo", wait_port=False, wrapper=("unshare", "--net"))
    code = fcc.wait_exit(30)
    assert code is not None and code != 0
    assert "has no IPv4 address" in fcc.output.text()


def test_fault_crash(sim_fcc: StartFcc) -> None:
    fcc = sim_fcc(fault="crash", wait_port=False)
    assert fcc.wait_exit(30) == 1
    text = fcc.output.text()
    assert "Application ready" in text and "Client IP Address and Port" not in text


def test_fault_silent(sim_fcc: StartFcc) -> None:
    fcc = sim_fcc(fault="silent", wait_port=False)
    assert fcc.output.wait_for("Trying receive interface", 30) is not None
    assert fcc.wait_exit(1) is None
    assert "Client IP Address and Port" not in fcc.output.text()
    assert fcc.stop() == -signal.SIGTERM


def test_fault_no_accept(sim_fcc: StartFcc, settings: factory_tool.FactorySettings) -> None:
    fcc = sim_fcc(fault="no-accept")
    with pytest.raises(factory_tool.InjectionError, match="no answer"):
        inject(fcc, settings, timeout=1)
    assert fcc.process.poll() is None


def test_fault_fail_after(sim_fcc: StartFcc, settings: factory_tool.FactorySettings) -> None:
    fcc = sim_fcc(fault="fail-after")
    with pytest.raises(factory_tool.InjectionError, match="comm status 9"):
        inject(fcc, settings)
    assert fcc.wait_exit(30) == 3
    assert list(working(fcc).iterdir()) == []


def test_fault_hang_after(sim_fcc: StartFcc, settings: factory_tool.FactorySettings) -> None:
    fcc = sim_fcc(fault="hang-after")
    assert inject(fcc, settings)["ReturnStatus"] == 0
    assert fcc.output.wait_for("Successfully completed factory flow", 30) is not None
    assert fcc.wait_exit(1) is None
    assert (working(fcc) / esfs.file_name("CfgParam_mbed.EndpointName")).exists()


def test_fault_ignore_term(sim_fcc: StartFcc, settings: factory_tool.FactorySettings) -> None:
    fcc = sim_fcc(fault="ignore-term")
    os.kill(fcc.process.pid, signal.SIGTERM)
    assert fcc.wait_exit(1) is None
    assert inject(fcc, settings)["ReturnStatus"] == 0
    assert fcc.wait_exit(30) == 0


def test_fault_ignore_term_needs_sigkill(sim_fcc: StartFcc) -> None:
    fcc = sim_fcc(fault="ignore-term")
    assert fcc.stop(grace=1) == -signal.SIGKILL


def test_fault_pause_after_exchange(tmp_path: Path, sim_fcc: StartFcc,
                                    settings: factory_tool.FactorySettings) -> None:
    release = tmp_path / "release"
    fcc = sim_fcc(fault="pause-after-exchange", env={"PEP_SIM_FCC_RELEASE": str(release)})
    assert inject(fcc, settings, "GW-p")["ReturnStatus"] == 0
    assert fcc.output.wait_for("Successfully processed comm message", 30) is not None
    assert fcc.wait_exit(1) is None
    assert esfs_codec.read_item(working(fcc), "CfgParam_mbed.EndpointName") == b"GW-p"
    assert "Successfully completed factory flow" not in fcc.output.text()
    release.touch()
    assert fcc.wait_exit(30) == 0
    assert "Successfully completed factory flow" in fcc.output.text()


def test_unknown_fault_is_a_usage_error(sim_fcc: StartFcc) -> None:
    fcc = sim_fcc(fault="explode", wait_port=False)
    assert fcc.wait_exit(30) == 2
