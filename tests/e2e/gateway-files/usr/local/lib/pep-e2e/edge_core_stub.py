"""edge-core's status endpoint, for the virtual gateway. Side effect: listens on 127.0.0.1:9101.

"connected" with the endpoint name FCC stored (its ESFS item in pal/WORKING, moved to
mcc_config by the agent) once credentials are installed, "connecting" before. Only what
`sim fcc` wrote can be read: a real FCC encrypts its items with the device's own key.
"""

from __future__ import annotations

import json
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from pep_agent.gateway import esfs
from pep_agent.sim import esfs_codec

# The lmp profile's place, unless the unit's environment names the gateway's profile's.
MCC_CONFIG = Path(os.environ.get("PEP_E2E_MCC_CONFIG", "/userdata/mbed/mcc_config"))


def endpoint_name() -> str | None:
    try:
        raw = esfs_codec.read_item(MCC_CONFIG / "WORKING",
                                   esfs.CONFIG_PREFIX + "mbed.EndpointName")
    except (OSError, esfs.EsfsError):
        return None
    return raw.decode("utf-8", "replace").strip("\x00 \n") or None


def status() -> dict[str, str]:
    name = endpoint_name()
    body = {"account-id": "0123456789abcdef0123456789abcdef", "edge-version": "e2e-stub",
            "lwm2m-server-uri": "coaps://lwm2m.example.invalid:5684"}
    if name is None:
        body.update({"status": "connecting", "endpoint-name": "", "internal-id": ""})
    else:
        body.update({"status": "connected", "endpoint-name": name,
                     "internal-id": "0176c0ffee000000000000000001"})
    return body


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path.split("?")[0] != "/status":
            self.send_error(404)
            return
        payload = json.dumps(status()).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: object) -> None:
        pass


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", 9101), Handler).serve_forever()
