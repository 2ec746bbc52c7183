#!/bin/sh
# A factory station's view: start provisioning on a gateway and wait for the outcome, over
# ssh (or on the gateway itself when HOST is "local"). Needs only sh, ssh and python3 on the
# station; the JSON is parsed with python3, no jq.
#
# Usage: factory-tool.sh HOST [TIMEOUT_SECONDS]
#   HOST     user@address of the gateway, or "local"
# Exit status: 0 provisioned (or verified), 1 failed, 2 not finished at the timeout (running,
# not started, or retrying: the unit runs a failed run again by itself), 3 no status could be
# read (ssh failed, not root on the gateway, a usage error or a bug: anything else), 4 deferred
# (an installed identity the server could not confirm: make the server reachable, run again).
set -eu

host=${1:?usage: factory-tool.sh HOST [TIMEOUT_SECONDS]}
timeout=${2:-1800}

on_gateway() {
    if [ "$host" = local ]; then
        "$@"
    else
        # BatchMode: never hang on a password prompt on the line.
        ssh -o BatchMode=yes -o ConnectTimeout=10 "$host" "$@"
    fi
}

# Returns once the agent has told systemd it is running (Type=notify, READY=1), so the state
# journal already says "running" when status --wait looks at it. The unit is skipped when the
# gateway is already provisioned (ConditionPathExists); a start that fails is reported by
# the status below, which is why its exit status is not checked here.
on_gateway systemctl start pep-agent.service || true

# status has codes of its own, which no error uses: 0 provisioned or verified, 30 failed,
# 31 running, 32 not started, 33 retrying, 34 deferred (README, "Exit codes and LED blink
# codes"). A typo here (exit 2) or an ssh failure (255) is not a state; capture the JSON either way.
set +e
doc=$(on_gateway pep-agent status --json --wait --timeout "$timeout")
code=$?
set -e

case $code in
    0) outcome=0 ;;
    30) outcome=1 ;;
    31|32|33) outcome=2 ;;
    34) outcome=4 ;;
    *)
        echo "factory-tool: could not read the gateway's status (exit $code)" >&2
        exit 3
        ;;
esac

printf '%s' "$doc" | python3 -c '
import json, sys
doc = json.load(sys.stdin)
print("state:        ", doc.get("state"))
print("serial:       ", doc.get("serial"))
print("enrollment id:", doc.get("enrollment_id"))
error = doc.get("error") or {}
if error:
    print("error:        ", error.get("message"), "(exit %s)" % error.get("code"))
    print("hint:         ", error.get("hint"))
'
exit "$outcome"
