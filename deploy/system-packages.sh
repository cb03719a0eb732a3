#!/usr/bin/env bash
# Debian packages the tests need: a real Prometheus (prometheus, promtool) and a real headless Chromium.
# Installs only what is missing, so later runs cost nothing. Needs root (as on the project's machines) or sudo.
set -euo pipefail
need=()
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
command -v prometheus >/dev/null 2>&1 || need+=(prometheus)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
[ -e /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || need+=(fonts-dejavu-core)
if [ ${#need[@]} -eq 0 ]; then
    exit 0
fi
sudo=""
if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "system-packages: need root or sudo to install: ${need[*]}" >&2; exit 1; }
    sudo="sudo"
fi
echo "system-packages: installing ${need[*]} (Debian)" >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q
# the prometheus package's post-install may try to start a service; there is no init system here, which is fine
$sudo apt-get install -y -q --no-install-recommends "${need[@]}" || {
    echo "system-packages: apt-get install failed for: ${need[*]}" >&2; exit 1; }
command -v promtool >/dev/null && command -v chromium >/dev/null
