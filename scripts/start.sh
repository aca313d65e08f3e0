#!/usr/bin/env bash
# Quick start: install what is missing, build, and run the daemon in the
# foreground on the shipped configuration (state under ./var).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-deps.sh build
[ -d build ] || meson setup build --buildtype=release
meson compile -C build fleetkeeper
exec build/fleetkeeper -c "${FLEETKEEPER_CONFIG:-etc/fleetkeeper.conf}" run
