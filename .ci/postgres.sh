#!/usr/bin/env bash
# A throwaway PostgreSQL server for tests and benchmarks, from Debian's packages.
#
#   eval "$(.ci/postgres.sh start)"   # installs if missing, starts, exports TRACKER_TEST_PG and PG_TEST_DIR
#   .ci/postgres.sh stop "$PG_TEST_DIR"
#
# The server runs as the `postgres` OS user (initdb refuses root) from a temporary data directory,
# listens on 127.0.0.1 and a unix socket on a free port, trusts local connections, and has fsync off
# (test data only). TRACKER_TEST_PG is a base URL; tests/pg.py creates one database per test from it.
set -euo pipefail

log() { echo "postgres.sh: $*" >&2; }

bindir() {
    if command -v pg_config >/dev/null 2>&1 && [ -x "$(pg_config --bindir)/initdb" ]; then
        pg_config --bindir
        return
    fi
    ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

as_postgres() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

start() {
    local bin
    bin="$(bindir)"
    if [ -z "$bin" ] || [ ! -x "$bin/initdb" ]; then
        log "installing postgresql (apt-get)"
        apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
        bin="$(bindir)"
    fi
    local dir port
    dir="$(mktemp -d /tmp/tracker-pg.XXXXXX)"
    port="$(free_port)"
    [ "$(id -u)" = 0 ] && chown postgres: "$dir"
    as_postgres "$bin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null
    as_postgres "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w start \
        -o "-p $port -c listen_addresses=127.0.0.1 -c unix_socket_directories=$dir -c fsync=off \
            -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" >/dev/null
    as_postgres "$bin/psql" -q -h "$dir" -p "$port" -U postgres -d postgres \
        -c "CREATE ROLE tracker LOGIN CREATEDB PASSWORD 'tracker'" >/dev/null
    log "PostgreSQL $("$bin/postgres" -V | awk '{print $3}') on 127.0.0.1:$port (data in $dir)"
    echo "export PG_TEST_DIR='$dir'"
    echo "export TRACKER_TEST_PG='postgresql+psycopg://tracker:tracker@127.0.0.1:$port/postgres'"
}

stop() {
    local dir="${1:-${PG_TEST_DIR:-}}"
    [ -n "$dir" ] && [ -d "$dir/data" ] || { log "usage: $0 stop DIR"; exit 2; }
    as_postgres "$(bindir)/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null || true
    rm -rf "$dir"
}

case "${1:-start}" in
    start) start ;;
    stop) shift; stop "$@" ;;
    *) log "usage: $0 start|stop DIR"; exit 2 ;;
esac
