#!/usr/bin/env bash
# Installs every Debian package that msam's build and tests need. Idempotent: packages
# already present are left alone, and nothing is fetched when all are installed.
set -euo pipefail

PACKAGES=(
  build-essential g++ cmake ninja-build pkg-config
  libtorch-dev libopenblas0-pthread libgloo-dev
  libinsighttoolkit5-dev
  libyaml-cpp-dev libspdlog-dev libcli11-dev nlohmann-json3-dev libgtest-dev
  zlib1g-dev python3
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#PACKAGES[@]} packages present"
  exit 0
fi

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
