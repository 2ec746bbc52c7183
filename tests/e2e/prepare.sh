#!/usr/bin/env bash
# Installs the host tools the virtual-gateway tests need, only when they are missing:
# debootstrap (builds the cached Debian root) and systemd-container (systemd-nspawn).
# The root itself is built and cached by the tests (see tests/e2e/e2e_image.py).
set -euo pipefail

need=()
command -v debootstrap >/dev/null 2>&1 || [ -x /usr/sbin/debootstrap ] || need+=(debootstrap)
command -v systemd-nspawn >/dev/null 2>&1 || need+=(systemd-container)
if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
echo "e2e: installing ${need[*]} with apt"
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
