"""How the FCC stand-in reads a CSR request's subject: the rules the real FCC showed (its
probes in tests/realfcc compare the names written)."""

from __future__ import annotations

import pytest

from pep_agent.sim.subject import IA5, PRINTABLE, UTF8, read

CN, ORG, COUNTRY = "2.5.4.3", "2.5.4.10", "2.5.4.6"


@pytest.mark.parametrize(("subject", "attributes"), [
    ("C=US,O=Org,CN=GW-1", [(COUNTRY, "US", PRINTABLE), (ORG, "Org", UTF8), (CN, "GW-1", UTF8)]),
    ("countryName=United States", [(COUNTRY, "United States", PRINTABLE)]),
    ("emailAddress=a@b", [("1.2.840.113549.1.9.1", "a@b", IA5)]),
    ("O=a\\,b,CN=c", [(ORG, "a,b", UTF8), (CN, "c", UTF8)]),
    ("O=o,   CN=c ", [(ORG, "o", UTF8), (CN, "c ", UTF8)]),
    ("CN=a,O=o,CN=b", [(CN, "b", UTF8), (ORG, "o", UTF8)]),
    ("CN=a=b", [(CN, "a=b", UTF8)]),
    ("O=,CN=x", [(ORG, "", UTF8), (CN, "x", UTF8)]),
    ("CN=x,", [(CN, "x", UTF8)]),
    ("", []),
    ("GW-1", []),
    ("CN=" + "g" * 255, [(CN, "g" * 255, UTF8)]),
    ("CN=" + "é" * 127, [(CN, "é" * 127, UTF8)]),
])
def test_subjects_kcm_reads(subject: str, attributes: list[tuple[str, str, int]]) -> None:
    assert read(subject) == attributes


@pytest.mark.parametrize("subject", [
    "XX=y", "cn=y", " CN=y", "SERIALNUMBER=y", "GW,CN=y", "O=a\\b", "CN=y\\",
    "CN=" + "g" * 256, "CN=" + "é" * 128,
])
def test_subjects_kcm_refuses(subject: str) -> None:
    assert read(subject) is None
