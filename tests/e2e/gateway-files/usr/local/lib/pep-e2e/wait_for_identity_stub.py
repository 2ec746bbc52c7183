"""wait-for-edge-identity, for the virtual gateway: polls edge-core until it is connected.

No side effects beyond HTTP requests to 127.0.0.1:9101; gives up after ten minutes.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.request

for _ in range(600):
    try:
        with urllib.request.urlopen("http://127.0.0.1:9101/status", timeout=2) as answer:
            if json.load(answer).get("status") == "connected":
                sys.exit(0)
    except OSError:
        pass
    time.sleep(1)
sys.exit(1)
