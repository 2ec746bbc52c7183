"""Parsec mode of the FCC stand-in: its/ and pst/ under mcc_config, the socket check."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.simprocs import SimFcc, SimServer

StartFcc = Callable[..., SimFcc]


@pytest.fixture
def parsec_socket(tmp_path: Path) -> Iterator[Path]:
    """A real listening Unix socket standing for /run/parsec/parsec.sock."""
    path = tmp_path / "parsec.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.bind(str(path))
        sock.listen(1)
        yield path


def test_parsec_mode_writes_its_and_pst(tmp_path: Path, server: SimServer,
                                        sim_fcc: StartFcc, parsec_socket: Path) -> None:
    mcc = tmp_path / "userdata" / "mbed" / "mcc_config"
    (mcc / "its").mkdir(parents=True)
    (mcc / "its" / "old-key").write_bytes(b"from the previous identity")
    fcc = sim_fcc(parsec=True, mcc_config=mcc, env={"PEP_SIM_PARSEC_SOCKET": str(parsec_socket)})
    reply = server.get("/v3/identity", serialNumber="GW-psa", ip=fcc.ip, port=fcc.port)
    assert reply.status_code == 200, reply.text
    assert fcc.wait_exit(30) == 0
    assert not (mcc / "its" / "old-key").exists()
    assert (mcc / "its" / "mbed.BootstrapDevicePrivateKey").read_bytes()[:1] == b"\x30"
    assert (mcc / "pst" / "mbed.EndpointName").read_text() == "GW-psa"
    assert (mcc / "pst" / "mbed.BootstrapDeviceCert").exists()
    assert not (fcc.cwd / "pal").exists()


def test_missing_parsec_socket_fails_like_the_real_fcc(tmp_path: Path,
                                                       sim_fcc: StartFcc) -> None:
    fcc = sim_fcc(parsec=True, mcc_config=tmp_path / "mcc", wait_port=False,
                  env={"PEP_SIM_PARSEC_SOCKET": str(tmp_path / "absent.sock")})
    code = fcc.wait_exit(30)
    assert code is not None and code != 0
    text = fcc.output.text()
    assert "error getting available providers" in text and "No such file or directory" in text
    assert "Client IP Address and Port" not in text


def test_a_regular_file_is_not_a_parsec_socket(tmp_path: Path, sim_fcc: StartFcc) -> None:
    fake = tmp_path / "parsec.sock"
    fake.write_text("")
    fcc = sim_fcc(parsec=True, mcc_config=tmp_path / "mcc", wait_port=False,
                  env={"PEP_SIM_PARSEC_SOCKET": str(fake)})
    code = fcc.wait_exit(30)
    assert code is not None and code != 0
