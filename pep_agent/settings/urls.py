"""URL checks for every address the agent sends to or asks: complete, before anything changes.

No side effects. A URL that passes here can be handed to the HTTP library without it raising,
and names a host that the resolver may look up: a typo is a configuration error (exit 3), never
a network failure that is retried until the server deadline.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping
from urllib.parse import urlencode, urlsplit

from pep_agent.errors import ConfigError

# A DNS name as resolvers accept it: labels of letters, digits, '-' (and '_', which /etc/hosts
# and some factory DNS servers use), 1-63 characters each, 253 in all.
_LABEL = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)\Z")
_PORT = re.compile(r"[0-9]{1,5}\Z")


def check_url(url: str, *, name: str) -> str:
    """`url` without a trailing slash, or ConfigError (exit 3) saying what is wrong with it.

    Accepts http(s)://HOST[:PORT][/PATH] only: no credentials, query or fragment, which would
    otherwise be logged and journalled with the URL.
    """
    problem = _problem(url)
    if problem:
        raise ConfigError(f"invalid {name} {_shown(url)}: {problem}",
                          hint="use http://HOST[:PORT] or https://HOST[:PORT]")
    return url.rstrip("/")


def _problem(url: str) -> str | None:
    if not url:
        return "it is empty"
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        return "it contains a space or a control character"
    if not url.isascii():
        return "it contains non-ASCII characters (use the punycode form of the host)"
    try:
        parts = urlsplit(url)
    except ValueError:  # the only case urlsplit refuses: an unbalanced '[' or ']'
        return "unbalanced brackets around an IPv6 address"
    if parts.scheme not in ("http", "https"):
        return "the scheme must be http or https"
    host, sep, port = _split_netloc(parts.netloc)
    if "@" in parts.netloc:
        return "credentials in the URL are not supported"
    if parts.query or parts.fragment or url.endswith(("?", "#")):
        return "a query or fragment is not allowed"
    if sep and not (_PORT.match(port) and 0 < int(port) < 65536):
        return f"port {port!r} is not a number from 1 to 65535"
    return _host_problem(host)


def check_settings(settings: object, named: Callable[[str], str]) -> None:
    """Every URL among the settings (server, the addresses sent to it, edge-core's status);
    `named(field)` says where a value came from (an option, a variable, a line)."""
    for field, what in _URL_SETTINGS.items():
        value = getattr(settings, field, None)
        if value is not None:
            check_url(value, name=f"{what} ({named(field)})")


_URL_SETTINGS = {"server_url": "server URL", "api_address": "apiAddress",
                 "gateway_services_address": "gatewayServicesAddress",
                 "status_url": "edge-core status URL"}


def _split_netloc(netloc: str) -> tuple[str, str, str]:
    """(host, ':' or '', port) of a netloc; an IPv6 host keeps its brackets."""
    if netloc.startswith("["):
        end = netloc.find("]")
        host, rest = netloc[:end + 1], netloc[end + 1:]
        return (host, ":", rest[1:]) if rest.startswith(":") else (host, "", rest)
    return netloc.rpartition(":") if ":" in netloc else (netloc, "", "")


def _host_problem(host: str) -> str | None:
    if not host:
        return "no host"
    if host.startswith("["):
        if not host.endswith("]"):
            return f"host {host!r} is not a valid IPv6 address"
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            return f"host {host!r} is not a valid IPv6 address"
        return None
    name = host[:-1] if host.endswith(".") else host
    if len(name) > 253 or not all(_LABEL.match(label) for label in name.split(".")):
        return f"host {host!r} is not a valid host name or IPv4 address"
    if name.replace(".", "").isdigit():
        try:
            ipaddress.IPv4Address(name)
        except ValueError:
            return f"host {host!r} is not a valid IPv4 address"
    return None


def _shown(url: str) -> str:
    """The URL for a message: credentials hidden, overlong input cut."""
    head, at, tail = url.partition("@")
    if at and "://" in head:
        url = head.split("://", 1)[0] + "://[credentials hidden]@" + tail
    return repr(url if len(url) <= 200 else url[:200] + "...")


# The headers the HTTP client sends on every request, all of them (it sets no others), so
# that a request's size is known before it is sent.
REQUEST_HEADERS = {"User-Agent": "pep-agent", "Accept-Encoding": "gzip, deflate",
                   "Accept": "*/*", "Connection": "close"}
# The pep server runs on node.js 10, which refuses a request whose request line and headers
# exceed 8 KiB (its default --max-http-header-size) with 431 or a closed connection.
MAX_REQUEST_HEAD = 8 * 1024


def request_size(base_url: str, path: str, query: Mapping[str, str]) -> int:
    """Bytes of the request line and headers the HTTP client sends for GET base_url+path?query:
    the query URL-encoded as requests does it, the Host header as http.client writes it."""
    parts = urlsplit(base_url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    default = {"http": 80, "https": 443}.get(parts.scheme)
    if parts.port is not None and parts.port != default:
        host += f":{parts.port}"
    target = parts.path.rstrip("/") + path + ("?" + urlencode(list(query.items()))
                                               if query else "")
    headers = {"Host": host, **REQUEST_HEADERS}
    head = f"GET {target} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return len((head + "\r\n").encode("ascii", errors="replace"))
