"""`sim fcc` against the real FCC: the same framed requests to both, the same answers.

Runs only with PEP_REAL_FCC=/path/to/factory-configurator-client-example.elf (built natively by
packaging/real-fcc/build.sh; `make realfcc`). For each probe both programs start in their own
folder on loopback, get the same bytes, and must agree on: the comm status or the absence of an
answer, ReturnStatus, whether and which SID is echoed, the exit status (or still running), and
the names of the files in pal/WORKING (the same hashed item names).
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cbor2
import pytest

from tests.simprocs import SimFcc, sim_argv, start_fcc

REAL = os.environ.get("PEP_REAL_FCC")
pytestmark = pytest.mark.skipif(
    not REAL, reason="set PEP_REAL_FCC to a real factory-configurator-client-example "
                     "(packaging/real-fcc/build.sh builds one) to compare it with sim fcc")

pytest.importorskip("cryptography")

from pep_agent.sim import bundle, factory_tool, wire  # noqa: E402

ANSWER_TIMEOUT = 30.0
# How long a program that should keep running is watched before it counts as still running.
RUNNING_GRACE = 2.0


@dataclass(frozen=True)
class Outcome:
    comm: int | str  # comm status, or "no answer"
    return_status: int | None
    sid: str | None
    exit: int | str  # exit status, or "running"
    working: tuple[str, ...]


def _settings() -> factory_tool.FactorySettings:
    return factory_tool.FactorySettings.generate()


SETTINGS = _settings() if REAL else None


def factory_doc(serial: str = "GW-cmp", **changes: Any) -> dict[str, Any]:
    assert SETTINGS is not None
    items, _ = factory_tool.device_items(SETTINGS, serial, "hw-cmp")
    doc: dict[str, Any] = cbor2.loads(bundle.encode_request(items, sid="sid-1"))
    for name, value in changes.items():
        if value is None:
            doc.pop(name, None)
        else:
            doc[name] = value
    return doc


def with_param(doc: dict[str, Any], name: str, data: Any) -> dict[str, Any]:
    doc["ConfigParams"] = [p if p["Name"] != name else {"Name": name, "Data": data}
                           for p in doc["ConfigParams"]]
    return doc


def framed(doc: Any) -> bytes:
    return wire.frame_request(doc if isinstance(doc, bytes) else cbor2.dumps(doc))


def bad_checksum(frame: bytes) -> bytes:
    return frame[:-1] + bytes([frame[-1] ^ 0xFF])


def sid_after_error() -> dict[str, Any]:
    doc = factory_doc(Verify=True)
    doc.pop("SID")
    doc["SID"] = "late"  # after the refused flag: not echoed
    return doc


# name -> (bytes to send, whether to close our side after sending)
PROBES: dict[str, Callable[[], tuple[bytes, bool]]] = {
    "factory-bundle": lambda: (framed(factory_doc()), False),
    "verify-cbor-true": lambda: (framed(factory_doc(Verify=True)), False),
    "verify-1-without-cloud-items": lambda: (framed({
        "SchemeVersion": "0.0.1", "SID": "s",
        "ConfigParams": [{"Name": "mbed.EndpointName", "Data": "GW-x"}], "Verify": 1}), False),
    "utc-offset-+0:00": lambda: (framed(with_param(factory_doc(), "mbed.UTCOffset", "+0:00")),
                                 False),
    "no-scheme-version": lambda: (framed(factory_doc(SchemeVersion=None)), False),
    "unknown-group": lambda: (framed(factory_doc(Bogus=1)), False),
    "not-cbor": lambda: (framed(b"\xff\xfe not cbor"), False),
    "bad-checksum": lambda: (bad_checksum(framed(factory_doc())), True),
    "size-0": lambda: (wire.TOKEN + b"\0\0\0\0", True),
    "short-body": lambda: (framed(factory_doc())[:100], True),
    "sid-after-the-error": lambda: (framed(sid_after_error()), False),
    "keep-alive-true": lambda: (framed(factory_doc(KpAlvSess=True)), False),
    "keep-alive-1": lambda: (framed(factory_doc(KpAlvSess=1, Verify=0)), False),
    "indefinite-map": lambda: (wire.frame_request(
        b"\xbf" + b"".join(cbor2.dumps(k) + cbor2.dumps(v) for k, v in factory_doc().items())
        + b"\xff"), False),
    "thirteen-keys": lambda: (framed(factory_doc(
        **{n: 0 for n in ("D", "Di", "Dis", "Disa", "Disab", "Disabl", "Disable")})), False),
    "token-after-partial-match": lambda: (b"m" + framed(factory_doc()), True),
    "no-bootstrap-ca-verify-0": lambda: (framed(factory_doc(Verify=0, Certificates=[
        c for c in factory_doc()["Certificates"] if c["Name"] != "mbed.BootstrapServerCACert"])),
        False),
}


def run_probe(fcc: SimFcc, data: bytes, close: bool) -> Outcome:
    assert fcc.ip is not None and fcc.port is not None
    comm: int | str = "no answer"
    return_status = sid = None
    with socket.create_connection((fcc.ip, fcc.port), timeout=ANSWER_TIMEOUT) as sock:
        sock.sendall(data)
        if close:
            sock.shutdown(socket.SHUT_WR)
        reader = wire.StreamReader(wire.socket_recv(sock, timeout=ANSWER_TIMEOUT))
        try:
            comm, reply = wire.read_response(reader)
        except (wire.ConnectionClosed, ConnectionResetError):
            reply = None
        if reply is not None:
            doc = cbor2.loads(reply)
            return_status, sid = doc.get("ReturnStatus"), doc.get("SID")
    code = fcc.wait_exit(ANSWER_TIMEOUT if comm != 0 or return_status is not None else 0)
    if code is None:
        code = fcc.wait_exit(RUNNING_GRACE)
    working = fcc.cwd / "pal" / "WORKING"
    names = tuple(sorted(p.name for p in working.iterdir())) if working.is_dir() else ()
    return Outcome(comm, return_status, sid, "running" if code is None else code, names)


@pytest.mark.parametrize("probe", sorted(PROBES))
def test_sim_fcc_answers_as_the_real_fcc(tmp_path: Path, probe: str) -> None:
    assert REAL is not None
    data, close = PROBES[probe]()
    outcomes = {}
    for name, argv in (("real", ["env", "ENTROPYSOURCE=/dev/urandom", REAL]),
                       ("sim", sim_argv("fcc"))):
        fcc = start_fcc(tmp_path / name, argv=argv)
        try:
            outcomes[name] = run_probe(fcc, data, close)
        finally:
            fcc.stop(grace=2.0)
        time.sleep(0.1)
    assert outcomes["sim"] == outcomes["real"]
