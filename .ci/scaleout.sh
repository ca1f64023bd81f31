#!/usr/bin/env bash
# `make test-scaleout`: the pipeline, crash, lifecycle and serving tests against a real PostgreSQL and
# a real Redis. Both are installed from Debian's packages when missing, started here on loopback on
# free ports in a temporary directory, and stopped again whatever the outcome.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PY:-.venv/bin/python}"

pg_bindir() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }

if [ -z "$(pg_bindir)" ] || ! command -v redis-server >/dev/null; then
    echo "Installing PostgreSQL and Redis from Debian's packages"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q postgresql redis-server || { apt-get update -q && apt-get install -y -q postgresql redis-server; }
fi
PGBIN="$(pg_bindir)"

free_port() { "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
PGPORT="$(free_port)"
REDISPORT="$(free_port)"
TMP="$(mktemp -d)"
chmod 755 "$TMP"
mkdir -p "$TMP/pg" "$TMP/redis"

# PostgreSQL refuses to run as root: as root, its files and processes belong to the postgres user.
if [ "$(id -u)" = 0 ]; then
    chown postgres "$TMP/pg"
    as_pg() { runuser -u postgres -- "$@"; }
else
    as_pg() { "$@"; }
fi

stop_all() {
    status=$?
    set +e
    as_pg "$PGBIN/pg_ctl" -D "$TMP/pg/data" -m fast -w stop >/dev/null 2>&1
    redis-cli -h 127.0.0.1 -p "$REDISPORT" shutdown nosave >/dev/null 2>&1
    rm -rf "$TMP"
    exit "$status"
}
trap stop_all EXIT

as_pg "$PGBIN/initdb" -D "$TMP/pg/data" -U hearth -A trust -E UTF8 --no-instructions >/dev/null
as_pg "$PGBIN/pg_ctl" -D "$TMP/pg/data" -l "$TMP/pg/server.log" -w -o \
    "-p $PGPORT -c listen_addresses=127.0.0.1 -k $TMP/pg -c fsync=off -c max_connections=200" start >/dev/null
as_pg "$PGBIN/createdb" -h 127.0.0.1 -p "$PGPORT" -U hearth hearth
redis-server --bind 127.0.0.1 --port "$REDISPORT" --daemonize yes --dir "$TMP/redis" \
    --pidfile "$TMP/redis/redis.pid" --logfile "$TMP/redis/redis.log" --save "" --appendonly no
for _ in $(seq 50); do redis-cli -h 127.0.0.1 -p "$REDISPORT" ping 2>/dev/null | grep -q PONG && break; sleep 0.1; done
echo "PostgreSQL on 127.0.0.1:$PGPORT, Redis on 127.0.0.1:$REDISPORT"

export HEARTH_DATABASE="postgres://hearth@127.0.0.1:$PGPORT/hearth"
export HEARTH_REDIS_URL="redis://127.0.0.1:$REDISPORT/0"
# Options (-x, -q, -k ...) go to pytest; a test path among the arguments replaces the default selection.
selection=(tests/test_scaleout.py tests/test_chain.py tests/trainer/test_crash.py tests/trainer/test_lifecycle.py
    tests/inference/test_serving.py tests/trainer/test_watchdog.py tests/inference/test_replicas.py)
for arg in "$@"; do case "$arg" in tests/*) selection=() ;; esac; done
set -- "$@" "${selection[@]}"
"$PY" -m pytest -p no:cacheprovider -m "not gpu and not browser" "$@"
