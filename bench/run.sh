#!/usr/bin/env bash
# Side-by-side relay benchmark: stunnerd and coturn under the same turnload runs, the
# server pinned to core 1 and the load generator to core 0. Prints one line per figure
# with both values and the ratio stunnerd/coturn. Everything stays on 127.0.0.1.
#
#   bench/run.sh            # DURATION=5 ALLOCS=10 HOLD=2000 by default
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-5}
ALLOCS=${ALLOCS:-10}
HOLD=${HOLD:-2000}
command -v turnserver >/dev/null || { echo "install coturn (scripts/deps)"; exit 1; }
cargo build --release -q -p stunnerd -p turnload
tmp=$(mktemp -d)
trap 'kill -9 ${spid:-} ${cpid:-} 2>/dev/null || true; rm -rf "$tmp"' EXIT

cat > "$tmp/stunnerd.conf" <<CONF
version: v1
admin: {healthcheck_endpoint: "http://127.0.0.1:18099"}
auth: {type: static, realm: stunner.l7mp.io, credentials: {username: user, password: pass}}
listeners:
  - {name: udp, protocol: TURN-UDP, address: 127.0.0.1, port: 23478, routes: [loop]}
clusters:
  - {name: loop, endpoints: [127.0.0.1/32]}
CONF

start_stunnerd() {
  taskset -c 1 target/release/stunnerd -c "$tmp/stunnerd.conf" -l all:WARN 2>"$tmp/stunnerd.log" &
  spid=$!; sleep 0.5; port=23478; pid=$spid
}
start_coturn() {
  taskset -c 1 turnserver -n --no-cli --log-file=stdout --simple-log -L 127.0.0.1 -E 127.0.0.1 \
    -p 23479 --allow-loopback-peers -u user:pass -r stunner.l7mp.io --lt-cred-mech \
    --no-tls --no-dtls --no-tcp --min-port 40000 --max-port 59999 >"$tmp/coturn.log" 2>&1 &
  cpid=$!; sleep 1; port=23479; pid=$cpid
}
stop() { kill -9 "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; sleep 0.3; }

load() { # label, extra turnload args...
  local label=$1; shift
  taskset -c 0 target/release/turnload --server "127.0.0.1:$port" --server-pid "$pid" --label "$label" "$@"
}

run_case() { # case name, turnload args...
  local name=$1; shift
  start_stunnerd; load stunnerd "$@" >"$tmp/$name.s"; stop
  start_coturn;   load coturn   "$@" >"$tmp/$name.c"; stop
  for key in cpu_us_per_datagram delivered_per_s loss_pct rtt_p99_ms setup_allocs_per_s rss_kib_per_allocation; do
    s=$(grep -o "$key=[0-9.]*" "$tmp/$name.s" | cut -d= -f2 || true)
    c=$(grep -o "$key=[0-9.]*" "$tmp/$name.c" | cut -d= -f2 || true)
    [ -n "$s" ] && [ -n "$c" ] || continue
    ratio=$(awk -v s="$s" -v c="$c" 'BEGIN { if (c > 0) printf "%.2f", s / c; else print "n/a" }')
    printf '%-28s %-24s stunnerd=%-12s coturn=%-12s ratio=%s\n' "$name" "$key" "$s" "$c" "$ratio"
  done
}

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), kernel $(uname -r)"
run_case "channeldata_100B_closed" --allocations "$ALLOCS" --size 100 --duration "$DURATION"
run_case "channeldata_1200B_closed" --allocations "$ALLOCS" --size 1200 --duration "$DURATION"
run_case "hold_${HOLD}_allocations" --allocations "$HOLD" --size 100 --duration 1
