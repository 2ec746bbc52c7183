#!/usr/bin/env bash
# The main job on the built-in simulators: a simulated pep server on loopback, a sandbox
# gateway under a temporary root, the simulated FCC, and the result. Touches nothing outside
# the temporary directory (the sandbox service manager only records what it would do).
set -euo pipefail

work=$(mktemp -d -t pep-agent-demo.XXXXXX)
root="$work/gateway"
serial=${DEMO_SERIAL:-"LINE 7/GW-$(date +%H%M%S)"}
server_pid=""
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
  true
}
trap cleanup EXIT

echo "== starting the simulated pep server"
pep-agent sim server --host 127.0.0.1 --port 0 --db "$work/pep.sqlite" >"$work/server.log" 2>&1 &
server_pid=$!
url=""
for _ in $(seq 1 100); do
  url=$(sed -n 's/^pep sim server listening on \(http:[^ ]*\).*/\1/p' "$work/server.log")
  [ -n "$url" ] && break
  kill -0 "$server_pid" 2>/dev/null || { cat "$work/server.log"; exit 1; }
  sleep 0.1
done
[ -n "$url" ] || { echo "the simulated server did not start"; cat "$work/server.log"; exit 1; }
echo "   $url"

# A fake sysfs LED, so that the demo shows what a single-colour status LED would do.
led="$root/sys/class/leds/status"
mkdir -p "$led"
echo none >"$led/trigger"; echo 0 >"$led/brightness"; echo 255 >"$led/max_brightness"
: >"$led/delay_on"; : >"$led/delay_off"

echo "== provisioning the sandbox gateway $root as serial '$serial'"
pep-agent provision --root "$root" --server "$url" --serial "$serial" --interface lo \
  --fcc-command "$(command -v pep-agent) sim fcc --listen-first" --no-reboot

echo
echo "== pep-agent status"
pep-agent status --root "$root"

echo
echo "== installed files"
(cd "$root" && find userdata -printf '%M %u %p\n' | sort -k3)

echo
echo "== what the sandbox service manager recorded"
cut -d' ' -f2- "$root/var/lib/pep-agent/sandbox-services.log"

echo
echo "== the status LED (sysfs files under the sandbox root)"
for f in trigger delay_on delay_off brightness; do printf '%-11s %s\n' "$f" "$(cat "$led/$f")"; done

echo
echo "== enrollment id, as the server has it"
pep-agent get-enrollment-id --server "$url" -s "$serial"
