#!/usr/bin/env bash
# Idempotent set-up on Debian 12: system packages when missing, node tools pinned by
# package-lock.json, the Python venv with the project and its dev extras, the solc adapter,
# and compiled contracts. Each step is skipped when its inputs have not changed.
set -euo pipefail
cd "$(dirname "$0")/.."

STAMPS=.venv/.stamps
need_apt=()
command -v node >/dev/null || need_apt+=(nodejs npm)
command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || need_apt+=(mosquitto)
command -v mosquitto_pub >/dev/null || need_apt+=(mosquitto-clients)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need_apt+=(postgresql postgresql-contrib)
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
if [ ${#need_apt[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "setup: missing Debian packages: ${need_apt[*]} (run as root or: sudo apt-get install ${need_apt[*]})" >&2
        exit 1
    fi
    echo "setup: installing Debian packages: ${need_apt[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi
# TimescaleDB's Apache edition, built once from Debian 13's source package (cached).
bash scripts/timescaledb.sh

# The Debian package starts a system broker on 1883; gridshare runs its own on its own port.
if command -v systemctl >/dev/null && systemctl is-enabled mosquitto >/dev/null 2>&1; then
    systemctl disable --now mosquitto >/dev/null 2>&1 || true
fi

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
mkdir -p "$STAMPS"
py_hash=$(sha256sum pyproject.toml | cut -c1-16)
if [ ! -f "$STAMPS/pip-$py_hash" ]; then
    echo "setup: installing Python packages"
    .venv/bin/pip install -q -U pip wheel
    .venv/bin/pip install -q -e '.[dev]'
    rm -f "$STAMPS"/pip-*
    touch "$STAMPS/pip-$py_hash"
fi

npm_hash=$(sha256sum package-lock.json | cut -c1-16)
if [ ! -f "node_modules/.stamp-$npm_hash" ]; then
    echo "setup: installing node packages (pinned by package-lock.json)"
    npm ci --no-audit --no-fund --loglevel=error
    touch "node_modules/.stamp-$npm_hash"
fi

.venv/bin/python -m gridshare.core.chain.toolchain
echo "setup: done"
