"""The FCC stand-in as a process, sent keys, certificates and CSR subjects that `cryptography`
raises on rather than reads: it answers each with the real FCC's status and text (taken from
the real one: tests/realfcc has the same cases as probes) and ends as after any answer, never
by an exception."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import cbor2
import pytest

from pep_agent.sim import bundle, factory_tool, wire
from tests import unparsable
from tests.simprocs import SimFcc

StartFcc = Callable[..., SimFcc]
SERIAL = "GW-odd"


@pytest.fixture(scope="module")
def settings() -> factory_tool.FactorySettings:
    return factory_tool.FactorySettings.generate()


def _answers(fcc: SimFcc, *messages: bytes) -> list[dict[str, Any]]:
    """FCC's answer to each message, sent one after another on one connection."""
    assert fcc.ip is not None and fcc.port is not None
    docs = []
    with socket.create_connection((fcc.ip, fcc.port), timeout=30) as sock:
        reader = wire.StreamReader(wire.socket_recv(sock, timeout=30))
        for message in messages:
            sock.sendall(wire.frame_request(message))
            status, reply = wire.read_response(reader)
            assert status == 0 and reply is not None
            docs.append(cbor2.loads(reply))
    return docs


def _replaced(settings: factory_tool.FactorySettings, name: str,
              make: Callable[[bytes, Any], bytes], kind: str | None = None) -> bytes:
    """A factory bundle whose item name is made from the device certificate and the CA key
    (added as a key of kind when the bundle has no such item)."""
    items, cert = factory_tool.device_items(settings, SERIAL, "hw")
    data = make(cert, settings.authority.key.private)
    if kind is not None:
        items.append(bundle.Item("Keys", name, data, kind))
    items = [bundle.Item(i.group, i.name, data, i.key_type) if i.name == name else i
             for i in items]
    return bundle.encode_request(items, sid="odd")


CASES: dict[str, tuple[Callable[[factory_tool.FactorySettings], bytes], int, str]] = {
    "a device certificate on an unknown curve": (
        lambda s: _replaced(s, "mbed.BootstrapDeviceCert", unparsable.with_prime239v1_key),
        18, "Curve unsupported:mbed.BootstrapDeviceCert"),
    "a device certificate of X.509 version 4": (
        lambda s: _replaced(s, "mbed.BootstrapDeviceCert", unparsable.with_version_4),
        18, "Certificate parse failed:mbed.BootstrapDeviceCert"),
    "a device certificate with an extension twice": (
        lambda s: _replaced(s, "mbed.BootstrapDeviceCert", unparsable.with_first_extension_twice),
        18, "Certificate parse failed:mbed.BootstrapDeviceCert"),
    "a private key on an unknown curve": (
        lambda s: _replaced(s, "mbed.BootstrapDevicePrivateKey",
                            lambda cert, ca: unparsable.private_key()),
        18, "Public key format invalid:mbed.BootstrapDevicePrivateKey"),
    "a PKCS#8 private key on an unknown curve": (
        lambda s: _replaced(s, "mbed.BootstrapDevicePrivateKey",
                            lambda cert, ca: unparsable.private_key_pkcs8()),
        18, "Public key format invalid:mbed.BootstrapDevicePrivateKey"),
    "a public key on an unknown curve": (
        lambda s: _replaced(s, "mbed.OddPublic", lambda cert, ca: unparsable.public_key(),
                            kind="ECCPublic"),
        18, "Curve unsupported:mbed.OddPublic"),
}


@pytest.mark.parametrize("case", CASES)
def test_a_key_or_certificate_cryptography_cannot_read_gets_fccs_answer(
        sim_fcc: StartFcc, settings: factory_tool.FactorySettings, case: str) -> None:
    build, status, text = CASES[case]
    fcc = sim_fcc()
    [doc] = _answers(fcc, build(settings))
    assert (doc["ReturnStatus"], doc["InfoMessage"]) == (status, text)
    # An error answer ends the exchange as the real FCC ends it: exit 0, not an exception's 1.
    assert fcc.wait_exit(30) == 0


def test_a_csr_subject_with_a_country_name_of_13_letters_gets_its_csr(
        sim_fcc: StartFcc, settings: factory_tool.FactorySettings) -> None:
    from cryptography import x509

    fcc = sim_fcc()
    subject = "C=United States,O=Company,CN=GW-odd"
    csr, last = _answers(fcc, cbor2.dumps({
        "SchemeVersion": "0.0.1", "SID": "csr", "KpAlvSess": 1, "Verify": 0, "CsrReqs": [{
            "PrKN": "mbed.LwM2MDevicePrivateKey", "Subj": subject, "MD": 1}]}),
        bundle.encode_request(factory_tool.device_items(settings, SERIAL, "hw")[0]))
    assert (csr["ReturnStatus"], csr["SID"]) == (0, "csr")
    [answer] = csr["Csrs"]
    # Written as given, as the real FCC writes it (X.520 has a country code of two letters,
    # and cryptography warns when it reads the subject): countryName, PrintableString.
    assert b"\x06\x03U\x04\x06\x13\x0dUnited States" in answer["Data"]
    assert x509.load_der_x509_csr(answer["Data"]).is_signature_valid
    assert last["ReturnStatus"] == 0
    assert fcc.wait_exit(30) == 0
