#!/usr/bin/env bash
# Installs what edge-agent needs on Debian / Ubuntu / Raspberry Pi OS and creates .venv.
#   scripts/bootstrap.sh         runtime only (enough for `edge-agent demo` and `run`)
#   scripts/bootstrap.sh --dev   plus test material and test/lint tools
set -euo pipefail
cd "$(dirname "$0")/.."

dev=0
[ "${1:-}" = "--dev" ] && dev=1

pkgs=(python3 python3-venv python3-dev gcc portaudio19-dev mosquitto)
[ "$dev" = 1 ] && pkgs+=(espeak-ng sox pocketsphinx-testdata alsa-utils)
# More synthetic voice families (agent/training/voices.py): Festival's ked, flite (evaluation only).
[ "$dev" = 1 ] && pkgs+=(festival festvox-kdlpc16k flite)

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if ! command -v apt-get >/dev/null; then
    echo "bootstrap: please install: ${missing[*]}" >&2
    exit 1
  fi
  sudo=""
  [ "$(id -u)" != 0 ] && sudo="sudo"
  echo "bootstrap: installing Debian packages: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

python="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
if [ "$dev" = 1 ]; then
  .venv/bin/python -m pip install -q -e ".[dev]"
else
  .venv/bin/python -m pip install -q -e ".[mic]"
fi
echo "bootstrap: ready (.venv/bin/edge-agent)"
