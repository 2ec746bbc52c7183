"""Query-string handling as the real pep server's express stack does it. No side effects.

express hands the handler values decoded by its query parser ('+' is a space, %XX decoded,
malformed escapes left as they are); the server then calls JavaScript's decodeURI once more
on some fields. Both steps are emulated here, including decodeURI's URIError on a malformed
escape, which the real server turns into a 500.
"""

from __future__ import annotations

from dataclasses import dataclass

URI_RESERVED = frozenset(";/?:@&=+$,#")
_HEX = frozenset("0123456789abcdefABCDEF")
# qs's parameterLimit: later parameters are ignored.
PARAMETER_LIMIT = 1000

IDENTITY_DEFAULTS = {
    "apiAddress": "https://api.us-east-1.mbedcloud.com",
    "gatewayServicesAddress": "https://gateways.us-east-1.mbedcloud.com",
    "hardwareVersion": "izuma-edge-gateway",
    "radioConfig": "00",
    "ledConfig": "01",
    "category": "production",
    "verificationKey": "verification-key-does-not-exist",
}
# The fields the real server passes through decodeURI a second time.
REDECODED = ("serialNumber", "apiAddress", "gatewayServicesAddress", "verificationKey")


class UriError(ValueError):
    """JavaScript's URIError: a malformed %-escape or invalid UTF-8 in one."""

    def __init__(self) -> None:
        super().__init__("URI malformed")


def _byte_at(text: str, at: int) -> int:
    pair = text[at + 1:at + 3]
    if at >= len(text) or text[at] != "%" or len(pair) != 2 or not set(pair) <= _HEX:
        raise UriError
    return int(pair, 16)


def _decode(text: str, reserved: frozenset[str]) -> str:
    """ECMAScript's Decode(string, reservedSet), over Python text instead of UTF-16."""
    out: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch != "%":
            out.append(ch)
            i += 1
            continue
        first = _byte_at(text, i)
        if first < 0x80:
            decoded = chr(first)
            # A reserved character stays escaped, exactly as it was written.
            out.append(text[i:i + 3] if decoded in reserved else decoded)
            i += 3
            continue
        # The leading one bits of the first byte give the length of the UTF-8 sequence.
        length = 0
        while length < 8 and first & (0x80 >> length):
            length += 1
        if length < 2 or length > 4:
            raise UriError
        raw = bytearray([first])
        for k in range(1, length):
            nxt = _byte_at(text, i + 3 * k)
            if nxt & 0xC0 != 0x80:
                raise UriError
            raw.append(nxt)
        try:
            out.append(raw.decode("utf-8"))  # rejects overlongs, surrogates and > U+10FFFF
        except UnicodeDecodeError:
            raise UriError from None
        i += 3 * length
    return "".join(out)


def decode_uri(text: str) -> str:
    """JavaScript decodeURI: like decodeURIComponent, but reserved characters stay escaped."""
    return _decode(text, URI_RESERVED)


def decode_uri_component(text: str) -> str:
    """JavaScript decodeURIComponent."""
    return _decode(text, frozenset())


def _qs_decode(text: str) -> str:
    spaced = text.replace("+", " ")
    try:
        return decode_uri_component(spaced)
    except UriError:
        return spaced  # qs keeps a value it cannot decode as it is


def parse_query(raw: str) -> dict[str, str]:
    """The query object express gives a handler (a repeated key joins its values with ",")."""
    found: dict[str, list[str]] = {}
    for part in raw.split("&")[:PARAMETER_LIMIT]:
        if not part:
            continue
        key, _, value = part.partition("=")
        name = _qs_decode(key)
        if name:
            found.setdefault(name, []).append(_qs_decode(value))
    # JavaScript turns an array into text by joining with commas when decodeURI or a
    # string comparison sees it; the simulator does that once, here.
    return {k: ",".join(v) for k, v in found.items()}


@dataclass(frozen=True)
class IdentityQuery:
    """The fields of GET /v3/identity after decoding and defaults."""

    # The API's own field names, as stored and returned.
    ip: str | None
    port: str | None
    serialNumber: str
    apiAddress: str
    gatewayServicesAddress: str
    hardwareVersion: str
    radioConfig: str
    ledConfig: str
    category: str
    verificationKey: str


def identity_query(query: dict[str, str]) -> IdentityQuery:
    """Apply the defaults and the second decodeURI; UriError or ValueError (no serial)."""
    values = {name: query.get(name) or default for name, default in IDENTITY_DEFAULTS.items()}
    serial = query.get("serialNumber")
    if not serial:
        raise ValueError("serialNumber is required")
    values["serialNumber"] = serial
    for name in REDECODED:
        values[name] = decode_uri(values[name])
    return IdentityQuery(ip=query.get("ip"), port=query.get("port"), **values)
