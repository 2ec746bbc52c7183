#!/bin/sh
# Upstream steps 2-6 without Parsec, the pep-agent way: FCC's pal folder becomes
# /userdata/mbed/mcc_config and the server's answer /userdata/edge_gw_config/identity.json.
# One command runs FCC, asks the server, installs both, releases edge-core and reboots.
#
# Usage: install-without-parsec.sh [--no-reboot]   (settings: /etc/default/pep-agent)
set -eu

# --no-parsec: even if a Parsec socket exists, store the credentials in pal/ (PSA off).
pep-agent provision --no-parsec "$@"

# Only reached with --no-reboot: edge-core runs again; wait for its cloud connection.
pep-agent status
pep-agent verify
