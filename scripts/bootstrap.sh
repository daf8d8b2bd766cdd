#!/usr/bin/env bash
# Installs what edge-agent needs on Debian / Ubuntu / Raspberry Pi OS and creates .venv.
#   scripts/bootstrap.sh         runtime only (enough for `edge-agent demo` and `run`)
#   scripts/bootstrap.sh --dev   plus test material and test/lint tools
#   scripts/bootstrap.sh --dev --voices
#                                plus the training voices from Debian's contrib/non-free
#                                sections (RHVoice, SVOX Pico, MBROLA en1): `edge-agent train`
#                                uses every family it finds; the shipped command model was
#                                trained with them (models/README.md)
set -euo pipefail
cd "$(dirname "$0")/.."

dev=0
voices=0
for arg in "$@"; do
  case "$arg" in
    --dev) dev=1 ;;
    --voices) dev=1; voices=1 ;;
    *) echo "bootstrap: unknown option $arg (use --dev, --voices)" >&2; exit 2 ;;
  esac
done
sudo=""
[ "$(id -u)" != 0 ] && sudo="sudo"

pkgs=(python3 python3-venv python3-dev gcc portaudio19-dev mosquitto)
[ "$dev" = 1 ] && pkgs+=(espeak-ng sox pocketsphinx-testdata alsa-utils)
# More synthetic voice families (agent/training/voices.py): Festival's ked, flite (evaluation only).
[ "$dev" = 1 ] && pkgs+=(festival festvox-kdlpc16k flite)
# Headless Chromium renders the timeline report page in tests/test_timeline.py (the DOM after
# its inlined plotly.js ran); fonts-liberation gives it text to measure without recommends.
[ "$dev" = 1 ] && pkgs+=(chromium fonts-liberation)
if [ "$voices" = 1 ]; then
  # RHVoice alan/bdl/clb (LGPL-2.1+), Pico (Apache-2.0), MBROLA en1: only their synthetic
  # speech is used, for training; none of them ships with the agent.
  pkgs+=(rhvoice rhvoice-english libttspico-utils mbrola mbrola-en1)
  . /etc/os-release
  list=/etc/apt/sources.list.d/edge-agent-voices.sources
  if [ "${ID:-}" = debian ] && [ ! -e "$list" ]; then
    echo "bootstrap: enabling Debian's contrib and non-free sections in $list"
    printf 'Types: deb\nURIs: http://deb.debian.org/debian\nSuites: %s\nComponents: contrib non-free\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
      "$VERSION_CODENAME" | $sudo tee "$list" >/dev/null
  fi
fi

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if ! command -v apt-get >/dev/null; then
    echo "bootstrap: please install: ${missing[*]}" >&2
    exit 1
  fi
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
