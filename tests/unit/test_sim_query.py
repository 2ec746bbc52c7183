"""express-style query decoding and the server's second decodeURI."""

from __future__ import annotations

import pytest

from pep_agent.sim.query import (
    IDENTITY_DEFAULTS,
    UriError,
    decode_uri,
    decode_uri_component,
    identity_query,
    parse_query,
)


@pytest.mark.parametrize(("raw", "expected"), [
    ("plain", "plain"),
    ("a%20b", "a b"),
    ("%41%62", "Ab"),
    # Reserved characters stay escaped, in the case they were written.
    ("a%2Fb%2fc", "a%2Fb%2fc"),
    ("%3B%2C%3F%3A%40%26%3D%2B%24%23", "%3B%2C%3F%3A%40%26%3D%2B%24%23"),
    ("%25", "%"),
    ("caf%C3%A9", "café"),
    ("%E2%82%AC", "€"),
    ("%F0%9F%98%80", "\U0001F600"),
    ("+", "+"),
])
def test_decode_uri(raw: str, expected: str) -> None:
    assert decode_uri(raw) == expected


def test_decode_uri_component_decodes_reserved_characters() -> None:
    assert decode_uri_component("a%2Fb%3D%2B") == "a/b=+"


@pytest.mark.parametrize("raw", [
    "100%", "%", "%4", "%zz", "%G0",
    "%80",            # continuation byte first
    "%C3",            # truncated sequence
    "%C3%41",         # second byte not a continuation
    "%C0%AF",         # overlong
    "%ED%A0%80",      # UTF-16 surrogate
    "%F4%90%80%80",   # above U+10FFFF
    "%F8%80%80%80%80",
])
def test_malformed_escapes_raise_uri_error(raw: str) -> None:
    with pytest.raises(UriError):
        decode_uri(raw)


def test_query_parser_like_express() -> None:
    q = parse_query("serialNumber=LINE+7%2FGW%2B001%2Crev%3D2&bad=%zz+x&empty=&flag"
                    "&a=1&a=2&=skipped&&")
    assert q == {"serialNumber": "LINE 7/GW+001,rev=2", "bad": "%zz x", "empty": "",
                 "flag": "", "a": "1,2"}


def test_identity_defaults_are_the_reference_cli_ones() -> None:
    q = identity_query({"serialNumber": "GW-1", "ip": "10.0.0.2", "port": "4000"})
    assert (q.ip, q.port, q.serialNumber) == ("10.0.0.2", "4000", "GW-1")
    assert q.apiAddress == "https://api.us-east-1.mbedcloud.com"
    assert q.gatewayServicesAddress == "https://gateways.us-east-1.mbedcloud.com"
    assert (q.hardwareVersion, q.radioConfig, q.ledConfig, q.category) == \
        ("izuma-edge-gateway", "00", "01", "production")
    assert q.verificationKey == IDENTITY_DEFAULTS["verificationKey"]


def test_given_fields_override_defaults() -> None:
    q = identity_query({"serialNumber": "GW", "category": "development", "radioConfig": "01"})
    assert (q.category, q.radioConfig) == ("development", "01")


def test_serial_is_decoded_twice_other_fields_once() -> None:
    # The client sent "a%2541": express made it "a%41", decodeURI makes it "aA".
    q = identity_query(parse_query("serialNumber=a%2541&hardwareVersion=hw%2541"))
    assert q.serialNumber == "aA"
    assert q.hardwareVersion == "hw%41"


@pytest.mark.parametrize("field", ["serialNumber", "apiAddress", "gatewayServicesAddress",
                                   "verificationKey"])
def test_percent_in_a_redecoded_field_is_a_uri_error(field: str) -> None:
    query = {"serialNumber": "GW-1", field: "50%off"}
    with pytest.raises(UriError):
        identity_query(query)


def test_percent_elsewhere_is_fine() -> None:
    assert identity_query({"serialNumber": "GW", "category": "50%"}).category == "50%"


def test_missing_serial_is_refused() -> None:
    with pytest.raises(ValueError, match="serialNumber"):
        identity_query({"ip": "10.0.0.2"})
