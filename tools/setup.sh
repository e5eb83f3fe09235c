#!/usr/bin/env bash
# Installs every Debian package that msam's build and tests need, and the viewer's npm
# packages. Idempotent: what is already present is left alone, and nothing is fetched when
# everything is installed.
set -euo pipefail

PACKAGES=(
  build-essential g++ cmake ninja-build pkg-config
  libtorch-dev libopenblas0-pthread libgloo-dev
  libinsighttoolkit5-dev
  libyaml-cpp-dev libspdlog-dev libcli11-dev nlohmann-json3-dev libgtest-dev
  zlib1g-dev python3
  libcpp-httplib-dev curl jq
  # the viewer of `msam serve` and its browser test
  nodejs chromium
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#PACKAGES[@]} packages present"
else
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# The viewer's NiiVue and the browser test's playwright-core, pinned by web/package-lock.json
# (npm registry); reinstalled only when the lockfile changes.
cd "$(dirname "$0")/.."
if [ ! -f web/node_modules/.package-lock.json ] ||
   [ web/package-lock.json -nt web/node_modules/.package-lock.json ]; then
  echo "setup: npm ci in web/"
  npm ci --prefix web --no-audit --no-fund --loglevel=error
fi
