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
from pep_agent.sim.bundle_device import Device
from pep_agent.sim.bundle_verify import META_DATA
from pep_agent.sim.x509 import Authority, KeyPair


@pytest.fixture(scope="module")
def settings() -> factory_tool.FactorySettings:
    return factory_tool.FactorySettings.generate()


@pytest.fixture(scope="module")
def creds() -> dict[str, bytes]:
    """A CA, a device key and its certificate for endpoint GW-1, made by the factory tool."""
    authority = Authority.generate()
    key, cert = authority.issue("GW-1", "acct")
    return {"ca": authority.cert_der, "key": key.private_der, "cert": cert,
            "other_key": KeyPair.generate().private_der}


def good_doc(creds: dict[str, bytes]) -> dict[str, Any]:
    return {
        "SchemeVersion": "0.0.1",
        "Keys": [{"Name": "mbed.BootstrapDevicePrivateKey", "Type": "ECCPrivate",
                  "Format": "der", "Data": creds["key"]}],
        "Certificates": [
            {"Name": "mbed.BootstrapDeviceCert", "Format": "der", "Data": creds["cert"]},
            {"Name": "mbed.BootstrapServerCACert", "Format": "der", "Data": creds["ca"]},
        ],
        "ConfigParams": [
            {"Name": "mbed.UseBootstrap", "Data": 1},
            {"Name": "mbed.BootstrapServerURI", "Data": "coaps://bootstrap.example:5684"},
            {"Name": "mbed.EndpointName", "Data": "GW-1"},
        ] + [{"Name": name, "Data": "x"} for name in META_DATA],
        "Verify": 1,
    }


def process(doc: Any, device: Device | None = None) -> bundle.Bundle:
    blob = doc if isinstance(doc, bytes) else cbor2.dumps(doc)
    return bundle_checks.process(blob, device or Device())


def refused(doc: Any, device: Device | None = None) -> BundleError:
    with pytest.raises(BundleError) as err:
        process(doc, device)
    return err.value


def status_of(doc: Any) -> FccStatus:
    return refused(doc).status


def test_factory_bundle_round_trip(settings: factory_tool.FactorySettings) -> None:
    items, cert = factory_tool.device_items(settings, "LINE 7/GW+001,rev=2", "hw-1")
    decoded = process(bundle.encode_request(items, sid="s1"))
    assert decoded.sid == "s1" and decoded.verify
    # mbed.CurrentTime sets the clock and is not stored, as in the real FCC.
    assert [(i.group, i.name, i.data) for i in decoded.items] == \
        [(i.group, i.name, i.data) for i in items if i.name != "mbed.CurrentTime"]
    # Everything FCU sends but the optional firmware-update certificate.
    assert decoded.warnings == ["Item not set:mbed.UpdateAuthCert"]
    endpoint = decoded.get("mbed.EndpointName")
    assert endpoint is not None and endpoint.data == "LINE 7/GW+001,rev=2"
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


def test_the_minimal_good_document_is_accepted(creds: dict[str, bytes]) -> None:
    decoded = process(good_doc(creds))
    # No clock, zone or offset set, no firmware-update items: warnings, not errors.
    assert decoded.warnings == [
        "Item not set:mbed.CurrentTime", "Item not set:mbed.Timezone",
        "Item not set:mbed.UTCOffset",
        "Certificate validity cannot be checked:mbed.BootstrapDeviceCert",
        "Item not set:mbed.UpdateAuthCert", "Item not set:mbed.ClassId",
        "Item not set:mbed.VendorId"]
    assert len(decoded.items) == 12


def test_unknown_group_is_invalid_group(creds: dict[str, bytes]) -> None:
    doc = good_doc(creds)
    doc["Passwords"] = []
    status = status_of(doc)
    assert status == FccStatus.BUNDLE_INVALID_GROUP
    assert int(status) == 23  # the real FCC's value, which is what travels on the wire


@pytest.mark.parametrize("version", [None, "0.0.2", 1])
def test_scheme_version_is_required(creds: dict[str, bytes], version: Any) -> None:
    doc = good_doc(creds)
    if version is None:
        del doc["SchemeVersion"]
    else:
        doc["SchemeVersion"] = version
    assert status_of(doc) == FccStatus.BUNDLE_INVALID_SCHEME


def test_a_last_message_without_the_bootstrap_ca_is_item_not_exist() -> None:
    err = refused({"SchemeVersion": "0.0.1", "ConfigParams": [
        {"Name": "mbed.UseBootstrap", "Data": 1}]})
    assert err.status == FccStatus.ITEM_NOT_EXIST == 25
    assert str(err) == "Item does not exist:mbed.BootstrapServerCACert"


@pytest.mark.parametrize("blob", [b"\xff\xff", b"\x9f", cbor2.dumps([1, 2])])
def test_not_a_cbor_map_is_a_bundle_error(blob: bytes) -> None:
    assert status_of(blob) == FccStatus.BUNDLE_ERROR


@pytest.mark.parametrize(("group", "change", "expected", "message"), [
    ("Keys", {"Format": "pem"}, FccStatus.NOT_SUPPORTED, "General error:"),
    ("Keys", {"Type": "RSAPrivate"}, FccStatus.NOT_SUPPORTED, "General error:"),
    ("Keys", {"Data": b""}, FccStatus.KCM_STORAGE_ERROR, "Item data empty:"),
    ("Keys", {"Data": b"not der"}, FccStatus.KCM_CRYPTO_ERROR, "Public key format invalid:"),
    ("Keys", {"Data": "text"}, FccStatus.BUNDLE_ERROR, "General error:"),
    ("Keys", {"Colour": "red"}, FccStatus.NOT_SUPPORTED, "General error:"),
    ("Certificates", {"Data": b"\x30\x05\x00"}, FccStatus.KCM_CRYPTO_ERROR,
     "Certificate parse failed:"),
    ("Certificates", {"Format": "pem"}, FccStatus.NOT_SUPPORTED, "General error:"),
    ("Certificates", {"Name": "../escape"}, FccStatus.INVALID_PARAMETER, "General error:"),
    ("ConfigParams", {"Data": True}, FccStatus.BUNDLE_ERROR, "General error:"),
    ("ConfigParams", {"Data": [1]}, FccStatus.BUNDLE_ERROR, "General error:"),
])
def test_bad_items_are_rejected(creds: dict[str, bytes], group: str, change: dict[str, Any],
                                expected: FccStatus, message: str) -> None:
    doc = good_doc(creds)
    doc[group][0].update(change)
    err = refused(doc)
    assert err.status == expected
    assert str(err).startswith(message)


def test_an_rsa_key_does_not_parse(creds: dict[str, bytes]) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    doc = good_doc(creds)
    doc["Keys"][0]["Data"] = rsa.generate_private_key(65537, 2048).private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption())
    err = refused(doc)
    assert (err.status, str(err)) == \
        (18, "Public key format invalid:mbed.BootstrapDevicePrivateKey")


def test_a_key_not_matching_its_certificate_is_34(creds: dict[str, bytes]) -> None:
    doc = good_doc(creds)
    doc["Keys"][0]["Data"] = creds["other_key"]
    err = refused(doc)
    assert (err.status, str(err)) == \
        (34, "Certificate public key validation failed:mbed.BootstrapDeviceCert")


def test_a_certificate_for_another_endpoint_is_14(creds: dict[str, bytes]) -> None:
    doc = good_doc(creds)
    doc["ConfigParams"][2]["Data"] = "GW-2"
    err = refused(doc)
    assert (err.status, str(err)) == \
        (14, "Certificate CN attribute invalid:mbed.BootstrapDeviceCert")


def test_an_item_sent_twice_is_17_and_the_first_stays(creds: dict[str, bytes]) -> None:
    doc = good_doc(creds)
    doc["ConfigParams"].append({"Name": "mbed.EndpointName", "Data": "GW-9"})
    err = refused(doc)
    assert (err.status, str(err)) == (17, "Data already exists:mbed.EndpointName")
    assert err.partial is not None and not err.partial.complete
    endpoint = err.partial.get("mbed.EndpointName")
    assert endpoint is not None and endpoint.data == "GW-1"


def test_an_item_stored_by_an_earlier_message_is_17(creds: dict[str, bytes]) -> None:
    device = Device()
    first = {"SchemeVersion": "0.0.1", "KpAlvSess": 1, "Verify": 0,
             "ConfigParams": [{"Name": "mbed.Manufacturer", "Data": "a"}]}
    assert process(first, device).complete
    assert refused(first, device).status == FccStatus.KCM_FILE_EXIST_ERROR


def test_a_group_key_twice_processes_both_values() -> None:
    pairs = [("SchemeVersion", "0.0.1"), ("ConfigParams", [{"Name": "mbed.A", "Data": "1"}]),
             ("ConfigParams", [{"Name": "mbed.A", "Data": "1"}])]
    blob = b"\xa3" + b"".join(cbor2.dumps(k) + cbor2.dumps(v) for k, v in pairs)
    assert status_of(blob) == FccStatus.KCM_FILE_EXIST_ERROR


def test_group_must_be_a_list_of_maps(creds: dict[str, bytes]) -> None:
    doc = good_doc(creds)
    doc["Keys"] = {"Name": "x"}
    assert status_of(doc) == FccStatus.BUNDLE_ERROR


def test_wrong_sized_rot_is_rejected(creds: dict[str, bytes]) -> None:
    doc = good_doc(creds)
    doc["ROT"] = b"\x00" * 15
    err = refused(doc)
    assert (err.status, str(err)) == (FccStatus.INVALID_PARAMETER, "General error:rot")


def test_a_certificate_chain_is_cert_then_crt1(creds: dict[str, bytes]) -> None:
    doc = good_doc(creds)
    doc["CertificateChains"] = [{"Name": "chain", "Format": "der",
                                 "DataArray": [creds["cert"], creds["ca"]]}]
    items = [i for i in process(doc).items if i.name == "chain"]
    assert [(i.typed, i.chain) for i in items] == [("Cert_chain", 2), ("Crt1_chain", 0)]


def test_a_chain_not_signed_in_order_is_refused(creds: dict[str, bytes]) -> None:
    doc = good_doc(creds)
    doc["CertificateChains"] = [{"Name": "chain", "Format": "der",
                                 "DataArray": [creds["ca"], creds["cert"]]}]
    assert status_of(doc) == FccStatus.KCM_CRYPTO_ERROR


def test_a_csr_request_stores_a_new_key_and_answers_its_csr() -> None:
    from cryptography import x509 as cx509

    decoded = process({"SchemeVersion": "0.0.1", "SID": "s", "Verify": 0, "KpAlvSess": 1,
                       "CsrReqs": [{"PrKN": "mbed.LwM2MDevicePrivateKey", "MD": 1,
                                    "Subj": "C=US,O=Org,CN=GW-1"}]})
    [(name, der)] = decoded.csrs
    assert name == "mbed.LwM2MDevicePrivateKey"
    assert cx509.load_der_x509_csr(der).is_signature_valid
    [key] = decoded.items
    assert key.typed == "PrvKey_mbed.LwM2MDevicePrivateKey" and len(key.content()) == 150


@pytest.mark.parametrize("change", [{"SID": None}, {"Verify": 1}, {"MD": 0}])
def test_a_csr_request_needs_a_sid_no_verify_and_a_digest(change: dict[str, Any]) -> None:
    request = {"PrKN": "k", "MD": change.get("MD", 1), "Subj": "CN=x"}
    doc = {"SchemeVersion": "0.0.1", "SID": "s", "Verify": 0, "KpAlvSess": 1,
           "CsrReqs": [request]}
    if "SID" in change:
        del doc["SID"]
    if "Verify" in change:
        doc["Verify"] = 1
    err = refused(doc)
    assert (err.status, str(err)) == (FccStatus.BUNDLE_ERROR, "General error:")
    assert err.partial is not None and err.partial.complete  # the session stays open


def test_verify_reports_missing_connectivity_items(creds: dict[str, bytes]) -> None:
    doc = good_doc(creds)
    doc["Certificates"] = doc["Certificates"][:1]
    doc["KpAlvSess"] = 1  # not the last message: no CA recorded, Verify still runs
    err = refused(doc)
    assert err.status == FccStatus.ITEM_NOT_EXIST
    assert str(err) == "Item does not exist:mbed.BootstrapServerCACert"
    # The warnings Verify gathered before the error go with it.
    assert err.warnings[0] == "Item not set:mbed.CurrentTime"


def test_item_content_is_what_storage_holds() -> None:
    assert bundle.Item("ConfigParams", "mbed.UseBootstrap", 1).content() == b"\1\0\0\0"
    assert bundle.Item("ConfigParams", "a", 5).content() == b"\5" + b"\0" * 7
    assert bundle.Item("ConfigParams", "a", -1).content() == b"\xff" * 8
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


def test_every_status_of_fcc_status_h_has_a_name() -> None:
    # fcc_status_e runs from 0 (success) to 37 (not supported) without gaps.
    assert [int(s) for s in FccStatus] == list(range(38))
    reply = bundle.encode_response(FccStatus.EXPIRED_CERTIFICATE, "Certificate expired:x")
    with pytest.raises(BundleError) as err:
        bundle.decode_response(reply)
    assert "ReturnStatus 13 (EXPIRED_CERTIFICATE)" in str(err.value)


def test_factory_bundle_is_what_the_real_fcc_accepts(
        settings: factory_tool.FactorySettings) -> None:
    items, _ = factory_tool.device_items(settings, "GW-3", "hw-3")
    doc = cbor2.loads(bundle.encode_request(items, sid="x"))
    assert doc["Verify"] == 1 and type(doc["Verify"]) is int  # never CBOR true
    params = {p["Name"]: p["Data"] for p in doc["ConfigParams"]}
    assert params["mbed.UTCOffset"] == "+00:00"
    assert len(params["mbed.ClassId"]) == len(params["mbed.VendorId"]) == 16
    assert "mbed.UpdateAuthCert" not in {c["Name"] for c in doc["Certificates"]}


def test_update_auth_cert_is_sent_when_configured(creds: dict[str, bytes]) -> None:
    configured = factory_tool.FactorySettings.generate(update_auth_cert=creds["ca"])
    items, _ = factory_tool.device_items(configured, "GW-4", "hw")
    decoded = process(bundle.encode_request(items))
    item = decoded.get("mbed.UpdateAuthCert")
    assert item is not None and item.data == creds["ca"]
    # The CA is valid until 9999: more than ten years, no warning at all.
    assert decoded.warnings == []


@pytest.mark.parametrize("flag", ["Verify", "Disable"])
@pytest.mark.parametrize("value", [True, False, 2, "1"])
def test_flags_are_only_the_integers_0_and_1(creds: dict[str, bytes], flag: str,
                                             value: Any) -> None:
    doc = good_doc(creds)
    doc[flag] = value
    err = refused(doc)
    assert (err.status, str(err)) == (FccStatus.BUNDLE_ERROR, f"General error:{flag}")


def test_bad_keep_alive_flag_is_35(creds: dict[str, bytes]) -> None:
    doc = good_doc(creds)
    doc["KpAlvSess"] = True
    assert status_of(doc) == FccStatus.BUNDLE_INVALID_KEEP_ALIVE_SESSION_STATUS == 35


def test_disable_within_a_kept_alive_session_is_35(creds: dict[str, bytes]) -> None:
    doc = good_doc(creds)
    doc.update(Disable=1, KpAlvSess=1)
    err = refused(doc)
    assert err.status == 35 and err.partial is not None and err.partial.keep_alive


def test_sid_counts_only_when_read_before_the_error() -> None:
    before = {"SchemeVersion": "0.0.1", "SID": "s-1", "Verify": True}
    after = {"SchemeVersion": "0.0.1", "Verify": True, "SID": "s-1"}
    for doc, sid in ((before, "s-1"), (after, None)):
        err = refused(doc)
        assert err.partial is not None and err.partial.sid == sid


def test_items_before_an_error_are_kept_for_storage(creds: dict[str, bytes]) -> None:
    doc = good_doc(creds)
    doc["ConfigParams"][2]["Data"] = None
    err = refused(doc)
    assert err.partial is not None
    assert [i.name for i in err.partial.items][-2:] == \
        ["mbed.UseBootstrap", "mbed.BootstrapServerURI"]


def test_a_key_selects_the_first_group_it_begins(creds: dict[str, bytes]) -> None:
    doc = good_doc(creds)
    doc["Cert"] = doc.pop("Certificates")  # strncmp over the key's length
    assert len(process(doc).items) == 12


def test_more_than_12_keys_is_a_bundle_error() -> None:
    doc: dict[str, Any] = {"SchemeVersion": "0.0.1", "KpAlvSess": 1, "Verify": 0}
    doc.update({name: 0 for name in ("D", "Di", "Dis", "Disa", "Disab", "Disabl", "Disable")})
    doc.update(SID="s", ConfigParams=[])
    assert len(doc) == 12
    process(doc)  # twelve keys pass
    doc["V"] = 0
    assert status_of(doc) == FccStatus.BUNDLE_ERROR


def test_indefinite_length_request_map_is_a_bundle_error() -> None:
    blob = b"\xbf" + cbor2.dumps("SchemeVersion") + cbor2.dumps("0.0.1") + b"\xff"
    assert status_of(blob) == FccStatus.BUNDLE_ERROR


@pytest.mark.parametrize(("offset", "ok"), [("+00:00", True), ("-12:30", True),
                                            ("+0:00", False), ("00:00", False), ("+1", False)])
def test_utc_offset_must_be_signed_hh_mm(creds: dict[str, bytes], offset: str, ok: bool) -> None:
    doc = good_doc(creds)
    doc["ConfigParams"].append({"Name": "mbed.UTCOffset", "Data": offset})
    if ok:
        process(doc)
        return
    err = refused(doc)
    assert err.status == FccStatus.UTC_OFFSET_WRONG_FORMAT == 33
    assert err.warnings == ["Item not set:mbed.CurrentTime", "Item not set:mbed.Timezone"]


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
