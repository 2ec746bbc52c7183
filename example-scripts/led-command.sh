#!/bin/sh
# LED command backend example: pep-agent runs `led-command.sh STATE` when
# PEP_LED_BACKEND=command and PEP_LED_COMMAND=/path/to/led-command.sh. Map each state to
# whatever drives the board's LED: a vendor tool, a GPIO line, a daemon's socket.
#
# States: off provisioning waiting success verified deferred failed failed-<class>
# (failed-<class> names the failure, e.g. failed-server-unreachable; see the README table).
# The agent gives the command 5 seconds; a non-zero exit is logged and provisioning goes on.
set -eu

state=${1:?usage: led-command.sh STATE}

# Replace with the board's tool, e.g. LED_TOOL="/usr/bin/board-led". This example only logs.
LED_TOOL=${LED_TOOL:-}

# colour and mode in the old relays' language: blinking = working, solid = settled.
case "$state" in
    off)          colour=none  mode=off ;;
    provisioning) colour=blue  mode=blink-fast ;;
    waiting)      colour=green mode=blink-slow ;;
    success)      colour=green mode=solid ;;
    verified)     colour=blue  mode=solid ;;
    deferred)     colour=amber mode=solid ;;
    failed)       colour=red   mode=solid ;;
    failed-*)     colour=red   mode=blink-code:${state#failed-} ;;
    *)            echo "led-command: unknown state $state" >&2; exit 2 ;;
esac

if [ -n "$LED_TOOL" ]; then
    exec "$LED_TOOL" "$colour" "$mode"
fi
logger -t pep-agent-led "state=$state colour=$colour mode=$mode"
