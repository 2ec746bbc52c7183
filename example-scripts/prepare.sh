#!/bin/sh
# Upstream step 1 ("prepare"), the pep-agent way: instead of masking edge-core and deleting
# mcc_config/edge_gw_config by hand, configure the agent once; `pep-agent provision` does the
# holding, stopping and clearing itself (keeping the old identity until the new one is in).
#
# Usage: prepare.sh SERVER_URL [SERIAL]
#   SERVER_URL  the pep server, e.g. http://192.168.1.10:5151
#   SERIAL      optional; else the agent discovers it (device tree, cpuinfo, DMI,
#               or PEP_SERIAL_COMMAND)
set -eu

server=${1:?usage: prepare.sh SERVER_URL [SERIAL]}
serial=${2:-}
env_file=/etc/default/pep-agent

# Keep every other line of the env file; replace only the keys set here.
set_key() {
    key=$1 value=$2
    touch "$env_file"
    tmp=$(mktemp "$env_file.XXXXXX")
    grep -v "^$key=" "$env_file" > "$tmp" || true
    printf '%s=%s\n' "$key" "$value" >> "$tmp"
    chmod 0644 "$tmp"
    mv "$tmp" "$env_file"
}

set_key PEP_SERVER_URL "$server"
if [ -n "$serial" ]; then
    set_key PEP_SERIAL "$serial"
fi

# Where this gateway stands (exit 0 provisioned, 30 failed, 31 running, 32 not started,
# 33 retrying).
pep-agent status || true

# The server answers and knows its records: a cheap end-to-end check of the network path
# before FCC is started (writes the first page to a scratch file).
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
if pep-agent list-enrollment-ids --limit 1 --output "$scratch/ids" >/dev/null; then
    echo "prepare: pep server at $server answers"
else
    echo "prepare: pep server at $server does not answer; check the URL and the network" >&2
    exit 1
fi

# Show the LED pattern an operator will see while provisioning runs.
pep-agent led provisioning
