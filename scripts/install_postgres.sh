#!/usr/bin/env bash
# Find or fetch Debian's PostgreSQL server and print its bin folder (the last line of stdout).
#
#   scripts/install_postgres.sh            # system server if installed, else the cached local copy
#   TP_POSTGRES_INSTALL=local scripts/install_postgres.sh   # always the local copy (no root needed)
#
# The local copy is Debian's own package, fetched with `apt-get download` and unpacked with `dpkg -x`
# under .cache/postgres, so it needs neither root nor a change to the machine: the tests that start a
# real PostgreSQL server (tests/test_mlflow_postgres.py) call this first. Library packages the server
# links against are fetched too when the machine lacks them; libllvm14 is not (it only serves the
# optional JIT: run the server with jit=off). Idempotent: a second call only checks the cache.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${TP_POSTGRES_CACHE:-$ROOT/.cache/postgres}
MODE=${TP_POSTGRES_INSTALL:-auto}   # auto | system | local
ARCH_LIBS=usr/lib/$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || echo x86_64-linux-gnu)

say() { echo ">> $*" >&2; }

newest_bin() {  # the bin folder of the highest PostgreSQL major under $1/usr/lib/postgresql
    local base=$1/usr/lib/postgresql
    [ -d "$base" ] || return 1
    local major
    major=$(find "$base" -mindepth 1 -maxdepth 1 -type d -printf '%f\n' | sort -n | tail -1)
    [ -n "$major" ] && [ -x "$base/$major/bin/postgres" ] && echo "$base/$major/bin"
}

works() {  # the server binary starts (its libraries resolve) and reports its version
    LD_LIBRARY_PATH="$CACHE/root/$ARCH_LIBS${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$1/postgres" --version >/dev/null 2>&1
}

if [ "$MODE" != local ] && bin=$(newest_bin "") && works "$bin"; then
    say "system PostgreSQL: $("$bin/postgres" --version)"
    echo "$bin"
    exit 0
fi
if [ "$MODE" = system ]; then
    say "no system PostgreSQL server (install Debian's postgresql package, or use TP_POSTGRES_INSTALL=local)"
    exit 1
fi

mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
flock 9   # two test sessions must not unpack into the same folder at once

if bin=$(newest_bin "$CACHE/root") && works "$bin"; then
    say "cached PostgreSQL: $bin"
    echo "$bin"
    exit 0
fi

# The server package the distribution's `postgresql` metapackage points at (postgresql-15 on bookworm).
server=${TP_POSTGRES_PACKAGE:-$(apt-cache depends postgresql 2>/dev/null | awk '/Depends: postgresql-[0-9]+$/ {print $2; exit}')}
if [ -z "$server" ]; then
    say "apt knows no postgresql package: run apt-get update (as root) first"
    exit 1
fi
missing=()
for dep in $(apt-cache depends "$server" | awk '/Depends: lib/ {print $2}' | sort -u); do
    [ "$dep" = libllvm14 ] && continue   # JIT only
    status=$(dpkg-query -W -f='${Status}' "$dep" 2>/dev/null || true)
    [ "$status" = "install ok installed" ] || missing+=("$dep")
done

work=$(mktemp -d "$CACHE/.fetch.XXXXXX")
chmod 755 "$work"   # apt-get download hands the file to the _apt user when run as root
trap 'rm -rf "$work"' EXIT
say "downloading $server ${missing[*]:-} from the Debian mirror"
(cd "$work" && apt-get download -q "$server" "${missing[@]}" >&2)
mkdir -p "$work/root"
for deb in "$work"/*.deb; do
    dpkg -x "$deb" "$work/root"
done
rm -rf "$CACHE/root"
mv "$work/root" "$CACHE/root"
chmod -R a+rX "$CACHE/root"   # a server run as an unprivileged user (tests under root) must read it

bin=$(newest_bin "$CACHE/root") || { say "the package held no server binary"; exit 1; }
if ! works "$bin"; then
    say "the unpacked server does not start; missing libraries:"
    LD_LIBRARY_PATH="$CACHE/root/$ARCH_LIBS" ldd "$bin/postgres" | grep 'not found' >&2 || true
    exit 1
fi
say "local PostgreSQL: $bin"
echo "$bin"
