#!/bin/sh
# Upstream steps 2-6 with Parsec and a (software) TPM, the pep-agent way: FCC writes
# /userdata/mbed/mcc_config/{its,pst} through Parsec itself; the agent installs identity.json
# and checks that mcc_config/pst exists before it calls the run a success.
#
# Usage: install-with-parsec.sh [--no-reboot]   (settings: /etc/default/pep-agent)
set -eu

# FCC needs the Parsec socket; without it FCC fails with "error getting available providers".
if [ ! -S /run/parsec/parsec.sock ]; then
    echo "install-with-parsec: /run/parsec/parsec.sock is missing; start parsec.service" >&2
    exit 1
fi

pep-agent provision --parsec "$@"

# Only reached with --no-reboot.
pep-agent status
pep-agent verify
