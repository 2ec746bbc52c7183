"""How KCM reads the subject of a CSR request ("C=US,O=Org,CN=name"): as mbedtls's
x509_string_to_names does, so that the simulated FCC accepts and refuses the subjects the real
one does and writes the same names. No side effects.

What the real FCC showed:
- labels are exact (case-sensitive, no space around them) and from the table below; an
  unknown label refuses the subject;
- a value runs to the next comma; "\\," is a comma in it, any other backslash refuses it;
  spaces after a comma are skipped, none elsewhere;
- a value of 256 bytes or more refuses it (mbedtls reads it into a buffer of that size);
- a value may be empty, and text after the last comma without "=" is ignored (so "" and "x"
  are empty subjects);
- a label given twice keeps its first place and takes the last value;
- each label has its own string type; nothing checks the value against it (a country code
  longer than two letters is written as given).
"""

from __future__ import annotations

UTF8, PRINTABLE, IA5 = 0x0C, 0x13, 0x16
MAX_VALUE = 256

# label: (attribute OID, DER string type).
LABELS: dict[str, tuple[str, int]] = {
    "C": ("2.5.4.6", PRINTABLE), "countryName": ("2.5.4.6", PRINTABLE),
    "ST": ("2.5.4.8", UTF8), "stateOrProvinceName": ("2.5.4.8", UTF8),
    "L": ("2.5.4.7", UTF8), "locality": ("2.5.4.7", UTF8),
    "O": ("2.5.4.10", UTF8), "organizationName": ("2.5.4.10", UTF8),
    "OU": ("2.5.4.11", UTF8), "organizationalUnitName": ("2.5.4.11", UTF8),
    "CN": ("2.5.4.3", UTF8), "commonName": ("2.5.4.3", UTF8),
    "SN": ("2.5.4.4", UTF8), "surName": ("2.5.4.4", UTF8),
    "GN": ("2.5.4.42", UTF8), "givenName": ("2.5.4.42", UTF8),
    "serialNumber": ("2.5.4.5", PRINTABLE),
    "title": ("2.5.4.12", UTF8),
    "initials": ("2.5.4.43", UTF8),
    "generationQualifier": ("2.5.4.44", UTF8),
    "pseudonym": ("2.5.4.65", UTF8),
    "dnQualifier": ("2.5.4.46", PRINTABLE),
    "postalAddress": ("2.5.4.16", PRINTABLE),
    "postalCode": ("2.5.4.17", PRINTABLE),
    "emailAddress": ("1.2.840.113549.1.9.1", IA5), "R": ("1.2.840.113549.1.9.1", IA5),
    "DC": ("0.9.2342.19200300.100.1.25", IA5),
    "domainComponent": ("0.9.2342.19200300.100.1.25", IA5),
}

Attribute = tuple[str, str, int]  # (OID, value, DER string type)


def _value(subject: str, at: int) -> tuple[str, int] | None:
    """The value starting at at, and where the next label starts; None if it is refused."""
    out: list[str] = []
    size = 0
    while at < len(subject) and subject[at] != ",":
        if subject[at] == "\\":
            at += 1
            if at == len(subject) or subject[at] != ",":
                return None
        out.append(subject[at])
        size += len(subject[at].encode())
        if size >= MAX_VALUE:
            return None
        at += 1
    at += 1
    while at < len(subject) and subject[at] == " ":
        at += 1
    return "".join(out), at


def read(subject: str) -> list[Attribute] | None:
    """The subject's attributes in order, or None if KCM refuses it."""
    found: dict[str, tuple[str, int]] = {}
    at = 0
    while (equals := subject.find("=", at)) >= 0:
        label = LABELS.get(subject[at:equals])
        taken = _value(subject, equals + 1)
        if label is None or taken is None:
            return None
        oid, kind = label
        value, at = taken
        found[oid] = (value, kind)
    return [(oid, value, kind) for oid, (value, kind) in found.items()]
