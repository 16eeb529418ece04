#!/usr/bin/env bash
# Install wrk (Debian package) for the HTTP benchmarks, if it is not there yet.
set -euo pipefail
command -v wrk >/dev/null && exit 0
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq wrk
