# shellcheck shell=bash
# ensure_postgres: makes a PostgreSQL server reachable for the tests and exports
# MICROMART_TEST_POSTGRES_URL. Uses the one at 127.0.0.1:5432 when it answers; otherwise
# starts a private cluster (installing Debian's server package if needed) with its data in a
# temp dir, stopped when the calling script exits.

pg_bin_dir() {
  local dir
  for dir in /usr/lib/postgresql/*/bin; do
    [ -x "$dir/initdb" ] && { echo "$dir"; return 0; }
  done
  return 1
}

ensure_postgres() {
  local url="${MICROMART_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
  if command -v psql >/dev/null && psql "$url" -Atqc 'select 1' >/dev/null 2>&1; then
    export MICROMART_TEST_POSTGRES_URL="$url"
    echo "postgres: using $url"
    return 0
  fi

  local bin
  if ! bin=$(pg_bin_dir); then
    echo "postgres: not installed; installing Debian's postgresql package"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq postgresql >/dev/null
    bin=$(pg_bin_dir) || { echo "postgres: install failed" >&2; return 1; }
  fi

  PG_TMP=$(mktemp -d /tmp/micromart-pg.XXXXXX)
  local port
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  # PostgreSQL refuses to run as root: run the private cluster as the `postgres` user.
  local run=()
  if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
    chown postgres "$PG_TMP"
    run=(runuser -u postgres --)
  fi
  "${run[@]}" "$bin/initdb" -D "$PG_TMP/data" -U postgres --auth=trust >/dev/null
  "${run[@]}" "$bin/pg_ctl" -D "$PG_TMP/data" -l "$PG_TMP/log" -w \
    -o "-p $port -k $PG_TMP -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300" start >/dev/null
  PG_STOP=("${run[@]}" "$bin/pg_ctl" -D "$PG_TMP/data" -m immediate stop)
  trap 'stop_private_postgres' EXIT
  export MICROMART_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:$port/postgres"
  echo "postgres: started a private server at $MICROMART_TEST_POSTGRES_URL"
}

stop_private_postgres() {
  [ -n "${PG_TMP:-}" ] || return 0
  "${PG_STOP[@]}" >/dev/null 2>&1 || true
  rm -rf "$PG_TMP"
}
