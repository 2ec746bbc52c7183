"""The CBOR bundle: what the factory tool builds, what FCC accepts, the response."""

from __future__ import annotations

from typing import Any

import cbor2
import pytest

# The factory tool signs certificates with the 'sim' extra.
pytest.importorskip("cryptography")

from pep_agent.sim import bundle, factory_tool
from pep_agent.sim.bundle import BundleError, FccStatus


@pytest.fixture(scope="module")
def settings() -> factory_tool.FactorySettings:
    return factory_tool.FactorySettings.generate()


def good_doc() -> dict[str, Any]:
    key = b"\x30\x03\x02\x01\x01"
    return {
        "SchemeVersion": "0.0.1",
        "Keys": [{"Name": "mbed.BootstrapDevicePrivateKey", "Type": "ECCPrivate",
                  "Format": "der", "Data": key}],
        "Certificates": [
            {"Name": "mbed.BootstrapDeviceCert", "Format": "der", "Data": key},
            {"Name": "mbed.BootstrapServerCACert", "Format": "der", "Data": key},
        ],
        "ConfigParams": [
            {"Name": "mbed.UseBootstrap", "Data": 1},
            {"Name": "mbed.BootstrapServerURI", "Data": "coaps://bootstrap.example:5684"},
            {"Name": "mbed.EndpointName", "Data": "GW-1"},
        ],
        "Verify": True,
    }


def status_of(doc: Any) -> FccStatus:
    with pytest.raises(BundleError) as err:
        bundle.decode_request(cbor2.dumps(doc))
    return err.value.status


def test_factory_bundle_round_trip(settings: factory_tool.FactorySettings) -> None:
    items, cert = factory_tool.device_items(settings, "LINE 7/GW+001,rev=2", "hw-1")
    decoded = bundle.decode_request(bundle.encode_request(items, sid="s1"))
    assert decoded.sid == "s1" and decoded.verify
    assert [(i.group, i.name, i.data) for i in decoded.items] == \
        [(i.group, i.name, i.data) for i in items]
    bundle.verify(decoded)
    endpoint = decoded.get("mbed.EndpointName")
    serial = decoded.get("mbed.SerialNumber")
    assert endpoint is not None and endpoint.data == "LINE 7/GW+001,rev=2"
    assert serial is not None and serial.data == "LINE 7/GW+001,rev=2"
    device_cert = decoded.get("mbed.BootstrapDeviceCert")
    assert device_cert is not None and device_cert.data == cert
    key = decoded.get("mbed.BootstrapDevicePrivateKey")
    assert key is not None and key.key_type == "ECCPrivate"


def test_factory_bundle_has_the_scheme_and_groups_a_real_one_has(
        settings: factory_tool.FactorySettings) -> None:
    items, _ = factory_tool.device_items(settings, "GW-2", "hw")
    doc = cbor2.loads(bundle.encode_request(items))
    assert doc["SchemeVersion"] == "0.0.1"
    assert {"Keys", "Certificates", "ConfigParams"} <= set(doc)
    names = {p["Name"] for p in doc["ConfigParams"]}
    assert {"mbed.UseBootstrap", "mbed.BootstrapServerURI", "mbed.AccountID",
            "mbed.HardwareVersion", "mbed.EndpointName", "mbed.SerialNumber"} <= names
    assert all(k["Format"] == "der" for k in doc["Keys"] + doc["Certificates"])


def test_the_minimal_good_document_is_accepted() -> None:
    decoded = bundle.decode_request(cbor2.dumps(good_doc()))
    bundle.verify(decoded)
    assert len(decoded.items) == 6


def test_unknown_group_is_invalid_group() -> None:
    doc = good_doc()
    doc["Passwords"] = []
    status = status_of(doc)
    assert status == FccStatus.BUNDLE_INVALID_GROUP
    assert int(status) == 23  # the real FCC's value, which is what travels on the wire


@pytest.mark.parametrize("version", [None, "0.0.2", 1])
def test_scheme_version_is_required(version: Any) -> None:
    doc = good_doc()
    if version is None:
        del doc["SchemeVersion"]
    else:
        doc["SchemeVersion"] = version
    assert status_of(doc) == FccStatus.BUNDLE_INVALID_SCHEME


def test_message_without_groups_is_an_invalid_parameter() -> None:
    assert status_of({"SchemeVersion": "0.0.1"}) == FccStatus.INVALID_PARAMETER


@pytest.mark.parametrize("blob", [b"\xff\xff", b"\x9f", cbor2.dumps([1, 2])])
def test_not_a_cbor_map_is_a_bundle_error(blob: bytes) -> None:
    with pytest.raises(BundleError) as err:
        bundle.decode_request(blob)
    assert err.value.status == FccStatus.BUNDLE_ERROR


@pytest.mark.parametrize(("group", "change", "expected"), [
    ("Keys", {"Format": "pem"}, FccStatus.BUNDLE_ERROR),
    ("Keys", {"Type": "RSAPrivate"}, FccStatus.BUNDLE_ERROR),
    ("Keys", {"Data": b""}, FccStatus.EMPTY_ITEM),
    ("Keys", {"Data": b"not der"}, FccStatus.KCM_CRYPTO_ERROR),
    ("Keys", {"Data": "text"}, FccStatus.BUNDLE_ERROR),
    ("Certificates", {"Data": b"\x30\x05\x00"}, FccStatus.INVALID_CERTIFICATE),
    ("Certificates", {"Name": ""}, FccStatus.INVALID_PARAMETER),
    ("Certificates", {"Name": "../escape"}, FccStatus.INVALID_PARAMETER),
    ("ConfigParams", {"Data": True}, FccStatus.BUNDLE_ERROR),
    ("ConfigParams", {"Data": [1]}, FccStatus.BUNDLE_ERROR),
    ("ConfigParams", {"Data": ""}, FccStatus.EMPTY_ITEM),
])
def test_bad_items_are_rejected(group: str, change: dict[str, Any],
                                expected: FccStatus) -> None:
    doc = good_doc()
    doc[group][0].update(change)
    assert status_of(doc) == expected


def test_group_must_be_a_list_of_maps() -> None:
    doc = good_doc()
    doc["Keys"] = {"Name": "x"}
    assert status_of(doc) == FccStatus.BUNDLE_ERROR


def test_wrong_sized_rot_is_rejected() -> None:
    doc = good_doc()
    doc["ROT"] = b"\x00" * 15
    assert status_of(doc) == FccStatus.WRONG_ITEM_DATA_SIZE


def test_certificate_chains_become_numbered_certificates() -> None:
    doc = good_doc()
    der = b"\x30\x00"
    doc["CertificateChains"] = [{"Name": "chain", "Format": "der", "Data": [der, der]}]
    names = [i.name for i in bundle.decode_request(cbor2.dumps(doc)).items]
    assert "chain_0" in names and "chain_1" in names


def test_verify_reports_missing_connectivity_items() -> None:
    doc = good_doc()
    doc["Certificates"] = doc["Certificates"][:1]
    decoded = bundle.decode_request(cbor2.dumps(doc))
    with pytest.raises(BundleError) as err:
        bundle.verify(decoded)
    assert err.value.status == FccStatus.ITEM_NOT_EXIST
    assert "mbed.BootstrapServerCACert" in str(err.value)


def test_item_content_is_what_storage_holds() -> None:
    assert bundle.Item("ConfigParams", "a", 5).content() == b"5"
    assert bundle.Item("ConfigParams", "a", "GW é").content() == "GW é".encode()
    assert bundle.Item("Keys", "a", b"\x00\x01").content() == b"\x00\x01"


def test_success_response_is_accepted_and_echoes_the_session() -> None:
    reply = bundle.encode_response(FccStatus.SUCCESS, bundle.SUCCESS_MESSAGE, "sid-1")
    doc = bundle.decode_response(reply, "sid-1")
    assert doc["ReturnStatus"] == 0
    assert doc["InfoMessage"] == "The Factory process succeeded"


def test_failed_response_raises_with_its_status() -> None:
    reply = bundle.encode_response(FccStatus.BUNDLE_INVALID_GROUP, "bad group")
    with pytest.raises(BundleError) as err:
        bundle.decode_response(reply)
    assert err.value.status == FccStatus.BUNDLE_INVALID_GROUP
    assert "bad group" in str(err.value)


def test_response_for_another_session_is_rejected() -> None:
    reply = bundle.encode_response(FccStatus.SUCCESS, "ok", "other")
    with pytest.raises(BundleError):
        bundle.decode_response(reply, "mine")
