"""edge-core's local status endpoint (GET /status on 127.0.0.1). Side effect: one HTTP GET.

urllib is enough for one local GET and keeps `pep-agent verify` light. Proxies from the
environment are ignored on purpose: the status endpoint is on the gateway itself, and a
factory http_proxy must not capture a loopback request.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlsplit

from pep_agent.errors import VerificationError

_MAX_BODY = 64 * 1024
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def read_status(url: str, timeout: float) -> dict[str, Any]:
    """GET edge-core's status JSON; raises VerificationError when it cannot be read."""
    if urlsplit(url).scheme not in ("http", "https"):
        raise VerificationError(f"edge-core status URL {url!r} is not http(s)",
                                "set PEP_STATUS_URL, e.g. http://127.0.0.1:9101/status")
    request = urllib.request.Request(url, headers={"Accept": "application/json"})  # noqa: S310
    try:
        with _opener.open(request, timeout=timeout) as response:
            body = response.read(_MAX_BODY)
    except urllib.error.HTTPError as e:
        # edge-core answers 200 in every state; anything else is not the status endpoint.
        raise VerificationError(f"edge-core status endpoint answered HTTP {e.code}") from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", None) or e
        raise VerificationError(f"edge-core status endpoint not answering ({reason})") from None
    try:
        data = json.loads(body)
    except ValueError:
        raise VerificationError("edge-core status endpoint did not answer JSON") from None
    if not isinstance(data, dict):
        raise VerificationError("edge-core status endpoint did not answer a JSON object")
    return data
