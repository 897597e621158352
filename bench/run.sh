#!/usr/bin/env bash
# Side-by-side relay benchmark: stunnerd, coturn and the upstream Go stunnerd (v1.2.1,
# built by scripts/upstream, on the same config file as ours) under the same turnload
# runs, the server pinned to core 1 and the load generator to core 0. Prints one line per
# figure and pair with both values and the ratio stunnerd/coturn or stunnerd/upstream.
# Everything stays on 127.0.0.1.
#
#   bench/run.sh            # DURATION=5 ALLOCS=10 HOLD=2000 REPS=3 LAT_REPS=7 by
#                           # default; each figure is the median of REPS (LAT_REPS for
#                           # the latency case) alternated runs per server
#   TINY=1 bench/run.sh     # a few hundred ms per case on debug builds: the test
#                           # suite's check that the benchmark runs, not a measurement
#   UPSTREAM=0 bench/run.sh # without the upstream Go stunnerd (also when it cannot be built)
#   ONLY=tcp_relay bench/run.sh  # only the cases whose name contains this
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -n "${TINY:-}" ]; then
  DURATION=${DURATION:-0.3}; ALLOCS=${ALLOCS:-4}; HOLD=${HOLD:-50}; PROFILE=debug; REPS=${REPS:-1}; LAT_REPS=${LAT_REPS:-1}
fi
REPS=${REPS:-3}
# RTT p99 on this shared machine is bimodal (0.1 ms, or several ms when the host stalls,
# for either server): the latency case takes the median of more runs.
LAT_REPS=${LAT_REPS:-7}
DURATION=${DURATION:-5}
ALLOCS=${ALLOCS:-10}
HOLD=${HOLD:-2000}
PROFILE=${PROFILE:-release}
command -v turnserver >/dev/null || { echo "install coturn (scripts/deps)"; exit 1; }
if [ "$PROFILE" = release ]; then
  cargo build --release -q -p stunnerd -p turnload
else
  cargo build -q -p stunnerd -p turnload
fi
bin=target/$PROFILE
# The upstream Go stunnerd, pinned by scripts/upstream (built there on first use, cached).
up=
if [ "${UPSTREAM:-1}" != 0 ]; then
  if up=$(scripts/upstream); then
    up=$up/stunnerd
  else
    up=
    echo "!!! upstream Go stunnerd not available (scripts/upstream failed): stunnerd vs coturn only !!!"
  fi
fi
tmp=$(mktemp -d)
trap 'kill -9 ${pid:-} 2>/dev/null || true; rm -rf "$tmp"' EXIT

cat > "$tmp/stunnerd.conf" <<CONF
version: v1
admin: {healthcheck_endpoint: "http://127.0.0.1:18099"}
auth: {type: static, realm: stunner.l7mp.io, credentials: {username: user, password: pass}}
listeners:
  - {name: udp, protocol: TURN-UDP, address: 127.0.0.1, port: 23478, routes: [loop]}
clusters:
  - {name: loop, endpoints: [127.0.0.1/32]}
CONF

# TCP relays (RFC 6062): a TURN-TCP listener and a protocol: TCP cluster. Upstream v1.2.1
# has no TCP allocations (442), so this case is stunnerd vs coturn only.
cat > "$tmp/stunnerd-tcp.conf" <<CONF
version: v1
admin: {healthcheck_endpoint: "http://127.0.0.1:18099"}
auth: {type: static, realm: stunner.l7mp.io, credentials: {username: user, password: pass}}
listeners:
  - {name: tcp, protocol: TURN-TCP, address: 127.0.0.1, port: 23478, routes: [loop]}
clusters:
  - {name: loop, protocol: TCP, endpoints: [127.0.0.1/32]}
CONF

wait_port() { # the server listens on port $1, UDP (or $2 = t: TCP) (a TURN Binding
              # would be nicer; a short sleep after the process is up is enough on loopback)
  for _ in $(seq 50); do
    if ss -l"${2:-u}"n 2>/dev/null | grep -q ":$1 "; then return 0; fi
    sleep 0.05
  done
}
run_stunnerd() { # config file, u|t (the listener to wait for), extra stunnerd args; env
                 # via STUNNERD_ENV
  local conf=$1 proto=$2; shift 2
  env ${STUNNERD_ENV:-} taskset -c 1 "$bin/stunnerd" -c "$conf" -l all:WARN "$@" 2>"$tmp/stunnerd.log" &
  pid=$!; port=23478; wait_port 23478 "$proto"; sleep 0.2
}
start_stunnerd() { run_stunnerd "$tmp/stunnerd.conf" u "$@"; }
start_stunnerd_tcp() { run_stunnerd "$tmp/stunnerd-tcp.conf" t; }
start_upstream() { # the Go stunnerd on the same config file
  taskset -c 1 "$up" -c "file://$tmp/stunnerd.conf" -l all:WARN "$@" 2>"$tmp/upstream.log" &
  pid=$!; port=23478; wait_port 23478; sleep 0.2
}
run_coturn() { # u|t (the listener to wait for), the flag that turns the other one off
  taskset -c 1 turnserver -n --no-cli --log-file=stdout --simple-log -L 127.0.0.1 -E 127.0.0.1 \
    -p 23479 --allow-loopback-peers -u user:pass -r stunner.l7mp.io --lt-cred-mech \
    --no-tls --no-dtls "$2" --min-port 40000 --max-port 59999 >"$tmp/coturn.log" 2>&1 &
  pid=$!; port=23479; wait_port 23479 "$1"; sleep 0.5
}
start_coturn() { run_coturn u --no-tcp; }
# coturn's TURN-TCP listener, which gives RFC 6062 TCP relays.
start_coturn_tcp() { run_coturn t --no-udp; }
# stunnerd drains allocations on SIGTERM (up to their lifetime): the benchmark kills.
stop() { kill -9 "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; sleep 0.3; }

load() { # label, extra turnload args...
  local label=$1; shift
  taskset -c 0 "$bin/turnload" --server "127.0.0.1:$port" --server-pid "$pid" --label "$label" "$@"
}

KEYS="tcp_mib_per_s cpu_us_per_mib cpu_us_per_datagram delivered_per_s loss_pct rtt_p50_ms rtt_p99_ms setup_allocs_per_s rss_kib_per_allocation churn_allocs_per_s cpu_us_per_allocation"
get() { grep -o "$2=[0-9.]*" "$1" 2>/dev/null | cut -d= -f2 || true; }
compare() { # case, file a, label a, file b, label b
  local name=$1 fa=$2 la=$3 fb=$4 lb=$5
  for key in $KEYS; do
    a=$(get "$fa" "$key"); b=$(get "$fb" "$key")
    [ -n "$a" ] && [ -n "$b" ] || continue
    ratio=$(awk -v a="$a" -v b="$b" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }')
    printf '%-34s %-24s %s=%-12s %s=%-12s ratio=%s\n' "$name" "$key" "$la" "$a" "$lb" "$b" "$ratio"
  done
}
# The median of each figure over files (REPS of them, alternated runs), as key=value lines.
medians() {
  for key in $KEYS; do
    v=$(for f in "$@"; do get "$f" "$key"; done | sort -g)
    [ -n "$v" ] || continue
    n=$(printf '%s\n' "$v" | wc -l)
    echo "$key=$(printf '%s\n' "$v" | sed -n "$(( (n + 1) / 2 ))p")"
  done
}
# Two servers under the same load, alternated REPS times; medians compared.
skip() { [ -n "${ONLY:-}" ] && [[ "$1" != *"$ONLY"* ]]; }
run_pair() { # case name, label a, start a, label b, start b, turnload args...
  local name=$1 la=$2 sa=$3 lb=$4 sb=$5; shift 5
  skip "$name" && return
  for r in $(seq "$REPS"); do
    eval "$sa"; load "$la" "$@" >"$tmp/$name.a.$r"; stop
    eval "$sb"; load "$lb" "$@" >"$tmp/$name.b.$r"; stop
  done
  medians "$tmp/$name".a.* >"$tmp/$name.a"
  medians "$tmp/$name".b.* >"$tmp/$name.b"
  compare "$name" "$tmp/$name.a" "$la" "$tmp/$name.b" "$lb"
}
run_case() { # case name, turnload args...: stunnerd (one worker) against coturn and, when
             # built, the upstream Go stunnerd (one readloop thread), alternated REPS times
  local name=$1; shift
  skip "$name" && return
  if [ -z "$up" ]; then
    run_pair "$name" stunnerd "start_stunnerd -u 1" coturn start_coturn "$@"
    return
  fi
  for r in $(seq "$REPS"); do
    start_stunnerd -u 1; load stunnerd "$@" >"$tmp/$name.a.$r"; stop
    start_coturn; load coturn "$@" >"$tmp/$name.b.$r"; stop
    start_upstream -u 1; load upstream "$@" >"$tmp/$name.c.$r"; stop
  done
  medians "$tmp/$name".a.* >"$tmp/$name.a"
  medians "$tmp/$name".b.* >"$tmp/$name.b"
  medians "$tmp/$name".c.* >"$tmp/$name.c"
  compare "$name" "$tmp/$name.a" stunnerd "$tmp/$name.b" coturn
  compare "$name" "$tmp/$name.a" stunnerd "$tmp/$name.c" upstream
}

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), kernel $(uname -r), $PROFILE build, median of $REPS runs each"
echo "servers: stunnerd ($(git rev-parse --short HEAD 2>/dev/null || echo worktree)), coturn $(dpkg-query -W -f='${Version}' coturn 2>/dev/null || echo '?')${up:+, upstream Go stunnerd v1.2.1 ($up)}"
# 1. Unbatched ChannelData: one datagram per send, 8 in flight per allocation.
run_case "channeldata_100B_closed" --allocations "$ALLOCS" --size 100 --duration "$DURATION"
run_case "channeldata_1200B_closed" --allocations "$ALLOCS" --size 1200 --duration "$DURATION"
# 2. Media-like bursts: 8 equal 1200 B datagrams per send, the generator using GSO.
run_case "channeldata_1200B_burst8_gso" --allocations "$ALLOCS" --size 1200 --window 16 --burst 8 --gso --duration "$DURATION"
# The same burst load on stunnerd without GSO/GRO: what batching through the kernel buys.
run_pair "burst8_gso_vs_no_gso" stunnerd "start_stunnerd -u 1" \
  no_gso 'STUNNERD_ENV="STUNNERD_NO_GSO=1 STUNNERD_NO_GRO=1" start_stunnerd -u 1' \
  --allocations "$ALLOCS" --size 1200 --window 16 --burst 8 --gso --duration "$DURATION"
# 3. Allocation churn (allocate, then Refresh 0) and memory per held allocation.
run_case "allocation_churn" --churn --allocations 32 --duration "$DURATION"
run_case "hold_${HOLD}_allocations" --allocations "$HOLD" --size 100 --duration 1
# 4. Latency at half of coturn's maximum rate (from case 1), both servers paced the same.
max=$(get "$tmp/channeldata_100B_closed.b" delivered_per_s)
half=$(awk -v m="${max:-2000}" 'BEGIN { r = int(m / 2); if (r < 100) r = 100; print r }')
REPS=$LAT_REPS run_case "paced_half_coturn_max_${half}pps" --allocations "$ALLOCS" --size 100 --rate "$half" --duration "$DURATION"
# 5. A fixed paced load, where every datagram can wake the server.
run_case "paced_40k_pps" --allocations "$ALLOCS" --size 100 --rate 40000 --duration "$DURATION"
# 6. Shared-nothing workers: two SO_REUSEPORT sockets, clients spread over both, vs one,
#    alternated like the other cases.
run_pair "two_workers_vs_one" u2 "start_stunnerd -u 2" u1 "start_stunnerd -u 1" \
  --allocations "$((ALLOCS * 2))" --size 100 --duration "$DURATION"
# 7. TCP relays (RFC 6062): 4 TCP allocations over TURN-TCP, each streaming 16 KiB writes
#    to turnload's TCP echo peer, every byte checked on return; MiB/s echoed and server
#    CPU per MiB relayed (both directions). Upstream v1.2.1 answers 442: not in this case.
run_pair "tcp_relay_16KiB_writes" stunnerd start_stunnerd_tcp coturn start_coturn_tcp \
  --tcp-relay --allocations 4 --size 16384 --duration "$DURATION"
# 8. Kernel offload of ChannelData (offload_engine TC vs user space vs coturn) on a veth
#    topology in network namespaces; its own script, which says SKIPPED where it cannot run.
if [ -z "${ONLY:-}" ] || [[ offload == *"$ONLY"* ]]; then
  bench/offload.sh
fi
