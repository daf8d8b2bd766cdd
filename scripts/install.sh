#!/usr/bin/env bash
# Installs edge-agent as a systemd service on Debian / Raspberry Pi OS (run from a checkout):
#
#   sudo scripts/install.sh               install or upgrade, enable and start the service
#   sudo scripts/install.sh --uninstall   remove the service and /opt/edge-agent; keeps
#                                         /etc/edge-agent and /var/lib/edge-agent
#   sudo scripts/install.sh --uninstall --purge   ... and those two and the user as well
#
# What it makes:
#   system user  edge-agent (groups audio, video: the microphone and the camera)
#   /opt/edge-agent/.venv          the agent (pip install of this checkout, [mic] extra)
#   /etc/edge-agent/agent.yaml     from config/agent.example.yaml, only if there is none
#   /etc/edge-agent/mqtt-password  empty (no password) unless it exists; mode 0600
#   /var/lib/edge-agent/models     the shipped models; a model already there (an update
#                                  installed later) is kept on upgrade
#   /etc/systemd/system/edge-agent.service, enabled
# Upgrades keep the config, the state (outbox, settings) and installed model updates.
#
# --root DIR installs into DIR instead of / (a throw-away root for tests and image builds):
# nothing is started there, the unit is enabled with `systemctl --root`. --no-venv skips the
# virtual environment (it needs the package index), --no-deps the Debian packages.
set -euo pipefail
src="$(cd "$(dirname "$0")/.." && pwd)"

root=/ uninstall=0 purge=0 venv=1 deps=1
while [ $# -gt 0 ]; do
  case "$1" in
    --root) root="$2"; shift 2 ;;
    --uninstall) uninstall=1; shift ;;
    --purge) purge=1; shift ;;
    --no-venv) venv=0; shift ;;
    --no-deps) deps=0; shift ;;
    -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
    *) echo "install: unknown argument: $1" >&2; exit 64 ;;
  esac
done
root="${root%/}"
live=0
[ -z "$root" ] && live=1
if [ "$live" = 1 ] && [ "$(id -u)" != 0 ]; then
  echo "install: run as root (sudo), or with --root DIR" >&2
  exit 77
fi

opt="$root/opt/edge-agent"
etc="$root/etc/edge-agent"
state="$root/var/lib/edge-agent"
unit_dir="$root/etc/systemd/system"
unit="$unit_dir/edge-agent.service"

systemctl_() {
  if [ "$live" = 1 ]; then systemctl "$@"; else systemctl --root="$root" "$@"; fi
}

if [ "$uninstall" = 1 ]; then
  if [ "$live" = 1 ]; then systemctl disable --now edge-agent.service 2>/dev/null || true
  elif [ -f "$unit" ]; then systemctl_ disable edge-agent.service 2>/dev/null || true; fi
  rm -f "$unit"
  rm -rf "$opt"
  [ "$live" = 1 ] && systemctl daemon-reload
  if [ "$purge" = 1 ]; then
    rm -rf "$etc" "$state"
    if [ "$live" = 1 ]; then userdel edge-agent 2>/dev/null || true
    elif [ -f "$root/etc/passwd" ]; then userdel --root "$root" edge-agent 2>/dev/null || true; fi
    echo "install: edge-agent removed with its config and state"
  else
    echo "install: edge-agent removed; kept $etc and $state (--purge removes them)"
  fi
  exit 0
fi

if [ "$deps" = 1 ]; then
  pkgs=(python3 python3-venv libportaudio2 mosquitto-clients)
  [ "$venv" = 1 ] && pkgs+=(python3-dev gcc portaudio19-dev)
  missing=()
  for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "install: Debian packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
fi

# The user: a system account with the capture groups, no login, home = the state directory.
if [ "$live" = 1 ]; then
  id edge-agent >/dev/null 2>&1 || useradd --system --home-dir /var/lib/edge-agent \
    --no-create-home --shell /usr/sbin/nologin --user-group edge-agent
  usermod -a -G audio,video edge-agent
elif [ -f "$root/etc/passwd" ]; then
  grep -q '^edge-agent:' "$root/etc/passwd" || useradd --root "$root" --system \
    --home-dir /var/lib/edge-agent --no-create-home --shell /usr/sbin/nologin --user-group edge-agent
  for g in audio video; do
    grep -q "^$g:" "$root/etc/group" && usermod --root "$root" -a -G "$g" edge-agent
  done
fi

mkdir -p "$opt" "$etc" "$state/models" "$unit_dir"
if [ "$venv" = 1 ]; then
  [ -x "$opt/.venv/bin/python" ] || python3 -m venv "$opt/.venv"
  "$opt/.venv/bin/python" -m pip install -q --upgrade pip
  "$opt/.venv/bin/python" -m pip install -q --upgrade "$src[mic]"
fi
cp "$src/README.md" "$opt/README.md"

if [ ! -f "$etc/agent.yaml" ]; then
  cp "$src/config/agent.example.yaml" "$etc/agent.yaml"
  echo "install: wrote $etc/agent.yaml (edit camera, microphone and mqtt, then restart)"
fi
if [ ! -f "$etc/mqtt-password" ]; then
  install -m 0600 /dev/null "$etc/mqtt-password"  # empty: no password
fi

for model in "$src"/models/*/; do
  name="$(basename "$model")"
  [ -e "$state/models/$name" ] || cp -a "$model" "$state/models/$name"
done

install -m 0644 "$src/systemd/edge-agent.service" "$unit"
if [ "$live" = 1 ]; then
  chown -R edge-agent:edge-agent "$state"
  chmod 0750 "$state"
  chown root:edge-agent "$etc/mqtt-password" "$etc/agent.yaml"
  chmod 0640 "$etc/mqtt-password" "$etc/agent.yaml"
  systemctl daemon-reload
  systemctl enable edge-agent.service
  systemctl restart edge-agent.service
  echo "install: edge-agent running (systemctl status edge-agent; journalctl -u edge-agent)"
else
  systemctl_ enable edge-agent.service
  echo "install: edge-agent installed into $root (not started)"
fi
