"""The CBOR bundle: what the factory tool builds, what FCC accepts, the response."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cbor2
import pytest

# The factory tool signs certificates with the 'sim' extra.
pytest.importorskip("cryptography")

from pep_agent.sim import bundle, bundle_checks, factory_tool
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
        "Verify": 1,
    }


def stored(decoded: bundle.Bundle) -> dict[str, bundle.Item]:
    return {item.name: item for item in decoded.items}


def status_of(doc: Any) -> FccStatus:
    with pytest.raises(BundleError) as err:
        bundle_checks.decode_request(cbor2.dumps(doc))
    return err.value.status


def test_factory_bundle_round_trip(settings: factory_tool.FactorySettings) -> None:
    items, cert = factory_tool.device_items(settings, "LINE 7/GW+001,rev=2", "hw-1")
    decoded = bundle_checks.decode_request(bundle.encode_request(items, sid="s1"))
    assert decoded.sid == "s1" and decoded.verify
    # mbed.CurrentTime sets the clock and is not stored, as in the real FCC.
    assert [(i.group, i.name, i.data) for i in decoded.items] == \
        [(i.group, i.name, i.data) for i in items if i.name != "mbed.CurrentTime"]
    # Everything FCU sends but the optional firmware-update certificate.
    assert bundle_checks.verify(stored(decoded)) == ["Item not set:mbed.UpdateAuthCert"]
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
    decoded = bundle_checks.decode_request(cbor2.dumps(good_doc()))
    bundle_checks.check_session_end(stored(decoded))
    assert bundle_checks.verify(stored(decoded)) == [f"Item not set:{name}"
                                                     for name in bundle_checks.WARN_IF_MISSING]
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


def test_a_last_message_without_the_bootstrap_ca_is_item_not_exist() -> None:
    decoded = bundle_checks.decode_request(cbor2.dumps({"SchemeVersion": "0.0.1"}))
    assert decoded.items == [] and decoded.verify
    with pytest.raises(BundleError) as err:
        bundle_checks.check_session_end(stored(decoded))
    assert err.value.status == FccStatus.ITEM_NOT_EXIST == 25


@pytest.mark.parametrize("blob", [b"\xff\xff", b"\x9f", cbor2.dumps([1, 2])])
def test_not_a_cbor_map_is_a_bundle_error(blob: bytes) -> None:
    with pytest.raises(BundleError) as err:
        bundle_checks.decode_request(blob)
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
    names = [i.name for i in bundle_checks.decode_request(cbor2.dumps(doc)).items]
    assert "chain_0" in names and "chain_1" in names


def test_verify_reports_missing_connectivity_items() -> None:
    doc = good_doc()
    doc["Certificates"] = doc["Certificates"][:1]
    decoded = bundle_checks.decode_request(cbor2.dumps(doc))
    with pytest.raises(BundleError) as err:
        bundle_checks.verify(stored(decoded))
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
    assert doc["InfoMessage"] == "The Factory process succeeded\n"
    assert reply[0] == 0xBF and reply[-1] == 0xFF  # indefinite-length, as tinycbor writes it


def test_failed_response_raises_with_its_status() -> None:
    reply = bundle.encode_response(FccStatus.BUNDLE_INVALID_GROUP, "bad group")
    with pytest.raises(BundleError) as err:
        bundle.decode_response(reply, "sid-not-echoed")
    assert err.value.status == FccStatus.BUNDLE_INVALID_GROUP
    # The status is reported before the missing SID echo, and says who refused.
    assert str(err.value) == \
        "FCC refused the bundle: ReturnStatus 23 (BUNDLE_INVALID_GROUP): bad group"


def test_response_for_another_session_is_rejected() -> None:
    reply = bundle.encode_response(FccStatus.SUCCESS, "ok", "other")
    with pytest.raises(BundleError) as err:
        bundle.decode_response(reply, "mine")
    assert "the factory tool refused FCC's answer" in str(err.value)


def test_factory_bundle_is_what_the_real_fcc_accepts(
        settings: factory_tool.FactorySettings) -> None:
    items, _ = factory_tool.device_items(settings, "GW-3", "hw-3")
    doc = cbor2.loads(bundle.encode_request(items, sid="x"))
    assert doc["Verify"] == 1 and type(doc["Verify"]) is int  # never CBOR true
    params = {p["Name"]: p["Data"] for p in doc["ConfigParams"]}
    assert params["mbed.UTCOffset"] == "+00:00"
    assert len(params["mbed.ClassId"]) == len(params["mbed.VendorId"]) == 16
    assert "mbed.UpdateAuthCert" not in {c["Name"] for c in doc["Certificates"]}


def test_update_auth_cert_is_sent_when_configured() -> None:
    cert = b"\x30\x03\x02\x01\x05"
    configured = factory_tool.FactorySettings.generate(update_auth_cert=cert)
    items, _ = factory_tool.device_items(configured, "GW-4", "hw")
    decoded = bundle_checks.decode_request(bundle.encode_request(items))
    assert stored(decoded)["mbed.UpdateAuthCert"].data == cert
    assert bundle_checks.verify(stored(decoded)) == []


@pytest.mark.parametrize("flag", ["Verify", "Disable"])
@pytest.mark.parametrize("value", [True, False, 2, "1"])
def test_flags_are_only_the_integers_0_and_1(flag: str, value: Any) -> None:
    doc = good_doc()
    doc[flag] = value
    assert status_of(doc) == FccStatus.BUNDLE_ERROR == 20


def test_bad_keep_alive_flag_is_35() -> None:
    doc = good_doc()
    doc["KpAlvSess"] = True
    assert status_of(doc) == FccStatus.BUNDLE_INVALID_KEEP_ALIVE_SESSION_STATUS == 35


def test_disable_within_a_kept_alive_session_is_35() -> None:
    doc = good_doc()
    doc.update(Disable=1, KpAlvSess=1)
    assert status_of(doc) == 35


def test_sid_counts_only_when_read_before_the_error() -> None:
    before = {"SchemeVersion": "0.0.1", "SID": "s-1", "Verify": True}
    after = {"SchemeVersion": "0.0.1", "Verify": True, "SID": "s-1"}
    for doc, sid in ((before, "s-1"), (after, None)):
        with pytest.raises(BundleError) as err:
            bundle_checks.decode_request(cbor2.dumps(doc))
        assert err.value.partial is not None and err.value.partial.sid == sid


def test_items_before_an_error_are_kept_for_storage() -> None:
    doc = good_doc()
    doc["ConfigParams"][2]["Data"] = ""
    with pytest.raises(BundleError) as err:
        bundle_checks.decode_request(cbor2.dumps(doc))
    assert err.value.partial is not None
    assert [i.name for i in err.value.partial.items][-2:] == \
        ["mbed.UseBootstrap", "mbed.BootstrapServerURI"]


def test_a_key_selects_the_first_group_it_begins() -> None:
    doc = good_doc()
    doc["Cert"] = doc.pop("Certificates")  # strncmp over the key's length
    assert len(bundle_checks.decode_request(cbor2.dumps(doc)).items) == 6


def test_more_than_12_keys_is_a_bundle_error() -> None:
    doc = good_doc()
    doc.update({name: 0 for name in ("D", "Di", "Dis", "Disa", "Disab", "Disabl", "Disable")})
    assert len(doc) == 12
    bundle_checks.decode_request(cbor2.dumps(doc))  # twelve keys (each a prefix of Disable) pass
    doc["V"] = 1
    assert status_of(doc) == FccStatus.BUNDLE_ERROR


def test_indefinite_length_request_map_is_a_bundle_error() -> None:
    blob = b"\xbf" + cbor2.dumps("SchemeVersion") + cbor2.dumps("0.0.1") + b"\xff"
    with pytest.raises(BundleError) as err:
        bundle_checks.decode_request(blob)
    assert err.value.status == FccStatus.BUNDLE_ERROR


@pytest.mark.parametrize(("offset", "ok"), [("+00:00", True), ("-12:30", True),
                                            ("+0:00", False), ("00:00", False), ("+1", False)])
def test_utc_offset_must_be_signed_hh_mm(offset: str, ok: bool) -> None:
    doc = good_doc()
    doc["ConfigParams"].append({"Name": "mbed.UTCOffset", "Data": offset})
    items = stored(bundle_checks.decode_request(cbor2.dumps(doc)))
    if ok:
        bundle_checks.verify(items)
        return
    with pytest.raises(BundleError) as err:
        bundle_checks.verify(items)
    assert err.value.status == FccStatus.UTC_OFFSET_WRONG_FORMAT == 33


def test_update_auth_cert_file_is_read_as_der_or_pem(
        tmp_path: Path, settings: factory_tool.FactorySettings) -> None:
    import ssl

    from pep_agent.errors import UsageError
    from pep_agent.sim.server import read_certificate

    der = settings.authority.cert_der
    (tmp_path / "c.der").write_bytes(der)
    (tmp_path / "c.pem").write_text(ssl.DER_cert_to_PEM_cert(der))
    (tmp_path / "bad").write_text("not a certificate")
    assert read_certificate(tmp_path / "c.der") == der
    assert read_certificate(tmp_path / "c.pem") == der
    for bad in ("bad", "missing"):
        with pytest.raises(UsageError):
            read_certificate(tmp_path / bad)
