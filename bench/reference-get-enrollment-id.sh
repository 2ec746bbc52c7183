#!/usr/bin/env bash
# The anchor of the cold-start benchmark: what the reference bash pep-cli does for
# `get-enrollment-id -s SERIAL`, one curl call with the serial URL-encoded.
set -euo pipefail
curl -sS --fail -G --data-urlencode "serialNumber=$1" \
  "${PEP_SERVER_URL:-http://localhost:5151}/v3/enrollment-id"
echo
