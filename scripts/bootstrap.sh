#!/usr/bin/env bash
# Installs what Pasar needs on a stock machine: uv, the Python environment from uv.lock, the PostgreSQL
# server binaries and (with --with-redis) redis-server. System packages are installed only when missing,
# and only as root; otherwise the script says exactly what to install.
set -euo pipefail
cd "$(dirname "$0")/.."

with_redis=false
[[ "${1:-}" == "--with-redis" ]] && with_redis=true

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

apt_updated=false
apt_install() {
    if [[ "$(id -u)" != 0 ]]; then
        echo "error: $1 is missing and we are not root: install the Debian package(s) '${*:2}' and run again" >&2
        exit 1
    fi
    if ! $apt_updated; then
        say "apt-get update"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        apt_updated=true
    fi
    say "apt-get install ${*:2}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${@:2}" >/dev/null
}

have_pg_server() {
    command -v initdb >/dev/null 2>&1 || compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null
}

if ! have_pg_server; then
    apt_install "the PostgreSQL server" postgresql
fi
# Debian's package starts its own cluster; Pasar runs a private one, so leave the system one stopped.
if $with_redis && ! command -v redis-server >/dev/null 2>&1; then
    apt_install "redis-server" redis-server
    (command -v systemctl >/dev/null && systemctl disable --now redis-server >/dev/null 2>&1) || true
    pkill -x redis-server >/dev/null 2>&1 || true
fi

if ! command -v uv >/dev/null 2>&1; then
    say "installing uv"
    python3 -m pip install --quiet --disable-pip-version-check uv || python3 -m pip install --quiet --user uv
    export PATH="$HOME/.local/bin:$PATH"
fi
say "uv sync (from uv.lock)"
# Bytecode compiled once, at install: where PYTHONDONTWRITEBYTECODE is set (as on the CI machines), Python would
# otherwise compile every imported module again in every process (dbt --version: 2.9 s instead of 1.9 s).
uv sync --frozen --python 3.11 --quiet --compile-bytecode
