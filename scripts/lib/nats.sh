# shellcheck shell=bash
# ensure_nats: makes a NATS server with JetStream reachable for the tests and exports
# MICROMART_TEST_NATS_URL. Uses the one at 127.0.0.1:4222 when it answers and has JetStream;
# otherwise starts a private `nats-server -js` (installing Debian's nats-server package if
# needed) on a spare port with its store in a temp dir, stopped when the calling script exits.
# The JetStream tests also start private servers of their own, so the binary must be there.

nats_server_bin() {
  command -v nats-server 2>/dev/null && return 0
  [ -x /usr/sbin/nats-server ] && { echo /usr/sbin/nats-server; return 0; }
  return 1
}

# nats_has_jetstream HOST PORT: the server answers and its INFO line says `"jetstream":true`.
nats_has_jetstream() {
  python3 - "$1" "$2" <<'PY'
import socket, sys
try:
    with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2) as s:
        s.settimeout(2)
        info = s.recv(4096).decode("utf-8", "replace")
    sys.exit(0 if info.startswith("INFO") and '"jetstream":true' in info else 1)
except OSError:
    sys.exit(1)
PY
}

ensure_nats() {
  if ! nats_server_bin >/dev/null; then
    echo "nats: not installed; installing Debian's nats-server package"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq nats-server >/dev/null
    nats_server_bin >/dev/null || { echo "nats: install failed" >&2; return 1; }
  fi

  local url="${MICROMART_TEST_NATS_URL:-nats://127.0.0.1:4222}"
  local hostport=${url#nats://}
  if nats_has_jetstream "${hostport%:*}" "${hostport##*:}"; then
    export MICROMART_TEST_NATS_URL="$url"
    echo "nats: using $url"
    return 0
  fi

  NATS_TMP=$(mktemp -d /tmp/micromart-nats.XXXXXX)
  local port
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  "$(nats_server_bin)" -js -a 127.0.0.1 -p "$port" -sd "$NATS_TMP/store" >"$NATS_TMP/log" 2>&1 &
  NATS_PID=$!
  local tries=0
  until nats_has_jetstream 127.0.0.1 "$port"; do
    tries=$((tries + 1))
    if [ "$tries" -gt 100 ] || ! kill -0 "$NATS_PID" 2>/dev/null; then
      echo "nats: the private server did not start:" >&2
      cat "$NATS_TMP/log" >&2
      return 1
    fi
    sleep 0.1
  done
  # Chains onto an EXIT trap set before (ensure_postgres sets one).
  local previous
  previous=$(trap -p EXIT | sed -E "s/^trap -- '(.*)' EXIT$/\1/")
  # shellcheck disable=SC2064 # expanded now on purpose: the earlier trap's command
  trap "stop_private_nats${previous:+; $previous}" EXIT
  export MICROMART_TEST_NATS_URL="nats://127.0.0.1:$port"
  echo "nats: started a private server at $MICROMART_TEST_NATS_URL"
}

stop_private_nats() {
  [ -n "${NATS_PID:-}" ] || return 0
  kill "$NATS_PID" 2>/dev/null && wait "$NATS_PID" 2>/dev/null
  rm -rf "$NATS_TMP"
}
