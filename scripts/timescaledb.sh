#!/usr/bin/env bash
# Builds and installs the TimescaleDB extension (Apache-2 edition) for the local PostgreSQL
# when no build of it is installed. Debian 12 packages none, but Debian 13's source package
# builds against PostgreSQL 15. The source is fetched through a private apt configuration (a
# deb-src line for trixie on the mirror this machine already uses), so the system's apt sources
# stay untouched. The built .deb is cached under .cache/timescaledb; a second run installs from
# the cache or does nothing. Set GRIDSHARE_SKIP_TIMESCALEDB=1 to leave the host without it.
set -euo pipefail
cd "$(dirname "$0")/.."

[ "${GRIDSHARE_SKIP_TIMESCALEDB:-}" = "1" ] && exit 0
pg_major=$(ls /usr/lib/postgresql/ | sort -n | tail -1)
package="postgresql-${pg_major}-timescaledb"
if [ -f "/usr/share/postgresql/${pg_major}/extension/timescaledb.control" ]; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "setup: TimescaleDB is not installed (run make setup as root to build it); the local stack uses plain PostgreSQL" >&2
    exit 0
fi

cache="$PWD/.cache/timescaledb"
mkdir -p "$cache"
deb=$(ls "$cache"/${package}_*.deb 2>/dev/null | head -1 || true)
if [ -z "$deb" ]; then
    echo "setup: building TimescaleDB (Apache edition) for PostgreSQL ${pg_major} from Debian 13's source package"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq --no-install-recommends debhelper postgresql-server-dev-all \
        cmake libssl-dev dpkg-dev >/dev/null
    mirror=$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1)
    [ -n "$mirror" ] || mirror=$(awk '$1 == "deb" {print $2; exit}' /etc/apt/sources.list)
    apt_dir="$cache/apt"
    mkdir -p "$apt_dir/lists/partial" "$cache/src"
    echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-trixie-stable.gpg] $mirror trixie main" \
        > "$apt_dir/sources.list"
    apt_opts=(-o "Dir::Etc::sourcelist=$apt_dir/sources.list" -o Dir::Etc::sourceparts=/dev/null
              -o "Dir::State::Lists=$apt_dir/lists")
    apt-get "${apt_opts[@]}" update -qq
    rm -rf "$cache/src"/*
    (cd "$cache/src" && apt-get "${apt_opts[@]}" source -qq timescaledb >/dev/null)
    src=$(find "$cache/src" -maxdepth 1 -mindepth 1 -type d -name 'timescaledb-*' | head -1)
    (cd "$src" && pg_buildext updatecontrol \
        && DEB_BUILD_OPTIONS=nocheck dpkg-buildpackage -us -uc -b -d >"$cache/build.log" 2>&1) \
        || { echo "setup: TimescaleDB build failed; see $cache/build.log" >&2; exit 1; }
    cp "$cache/src"/${package}_*.deb "$cache/"
    deb=$(ls "$cache"/${package}_*.deb | head -1)
fi
dpkg -i "$deb" >/dev/null
echo "setup: installed $(basename "$deb")"
