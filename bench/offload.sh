#!/usr/bin/env bash
# Kernel offload benchmark (issue 17): the same ChannelData load through stunnerd with
# offload_engine None (user space), TC (the TC eBPF program) and XDP (the XDP program in
# front of TC), and through coturn, on a
# topology this script makes and removes: client netns <-> gateway netns (the server)
# <-> peer netns over veth pairs, 10.201.1.0/24 and 10.201.2.0/24, nothing outside them.
# The server is pinned to core 1, turnload (client and echo peer) to core 0.
#
# CPU per relayed datagram is reported two ways:
#  - core_cpu_us_per_datagram: the busy time of core 1 (/proc/stat cpu1: user, nice,
#    system, irq, softirq, steal) per relayed datagram. Core 1 runs the server process
#    and, by RPS, the receive processing of the gateway's interfaces g1 and g2, where
#    the TC program runs; the generator's interfaces (c0, p0) are steered to core 0 with
#    turnload. So core 1 is charged with all of the relay work in every mode (socket
#    path and process for user space; softirq for the kernel path), and nothing else.
#    Without the steering the veths would process a packet on the sending CPU, and the
#    kernel relay would land on the generator's core, uncounted. XDP runs before RPS,
#    in the NAPI poll of g1/g2: their NAPI is threaded and its kernel threads pinned
#    to core 1 (the far ends' to core 0), which charges XDP's work to core 1 as well.
#    The XDP program needs forwarding on in the gateway (its route lookup refuses
#    without) and NAPI on the far ends of the veths it redirects into (GRO on c0, p0);
#    the client and peer send full checksums (tx checksumming off on c0, p0), since XDP
#    hands CHECKSUM_PARTIAL datagrams to TC. Every mode runs on that same setup.
#    FAR_THREADED=0 leaves the far ends' NAPI unthreaded: it then runs where XDP's
#    redirect flush wakes it, on core 1, which charges XDP also with rebuilding an skb
#    from each frame at the far end (a veth's cost that a NIC does not have).
#    XDP_THREADED=0 leaves g1/g2 unthreaded too (XDP then runs on the sender's core:
#    use it only to look at latency).
#  - cpu_us_per_datagram: the server process's own time (/proc/PID/stat), which is
#    nearly nothing for an offloaded channel.
#
#   bench/offload.sh              # DURATION=5 ALLOCS=10 REPS=3 (medians); ONLY=paced: one case
#   TINY=1 bench/offload.sh       # short runs on debug builds (the suite's smoke run)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -n "${TINY:-}" ]; then DURATION=${DURATION:-0.3}; PROFILE=debug; REPS=${REPS:-1}; fi
DURATION=${DURATION:-5}; ALLOCS=${ALLOCS:-10}; REPS=${REPS:-3}; PROFILE=${PROFILE:-release}
if [ "$(id -u)" -ne 0 ] || ! ip netns add ob-probe$$ 2>/dev/null; then
  echo "SKIPPED: the offload benchmark needs root and network namespaces"; exit 0
fi
ip netns del ob-probe$$
if [ "$PROFILE" = release ]; then cargo build --release -q -p stunnerd -p turnload; else cargo build -q -p stunnerd -p turnload; fi
bin=$PWD/target/$PROFILE
C=ob-c$$ G=ob-g$$ P=ob-p$$
tmp=$(mktemp -d)
cleanup() {
  kill -9 ${pid:-} 2>/dev/null || true
  for n in $C $G $P; do ip netns del "$n" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT
ip netns add $C; ip netns add $G; ip netns add $P
ip link add c0 netns $C type veth peer name g1 netns $G
ip link add p0 netns $P type veth peer name g2 netns $G
ip -n $C addr add 10.201.1.2/24 dev c0; ip -n $G addr add 10.201.1.1/24 dev g1
ip -n $G addr add 10.201.2.1/24 dev g2; ip -n $P addr add 10.201.2.2/24 dev p0
for x in "$C c0" "$G g1" "$G g2" "$P p0" "$G lo" "$C lo" "$P lo"; do set -- $x; ip -n "$1" link set "$2" up; done
ip -n $C route add default via 10.201.1.1; ip -n $P route add default via 10.201.2.1
# RPS: receive processing of the gateway's interfaces on core 1, the generator's on 0.
rps() { ip netns exec "$1" sh -c "echo $3 > /sys/class/net/$2/queues/rx-0/rps_cpus"; }
rps $G g1 2; rps $G g2 2; rps $C c0 1; rps $P p0 1
command -v ethtool >/dev/null || { echo "SKIPPED: the offload benchmark needs ethtool (scripts/deps)"; exit 0; }
ip netns exec $G sh -c 'echo 1 > /proc/sys/net/ipv4/ip_forward'
# (Threaded NAPI can be set only on a veth that has NAPI: GRO on, or XDP attached.)
threaded() { ip netns exec "$1" sh -c "echo 1 > /sys/class/net/$2/threaded"; }
for x in "$C c0" "$P p0"; do set -- $x; ip netns exec "$1" ethtool -K "$2" tx off gro on >/dev/null; [ "${FAR_THREADED:-1}" = 0 ] || threaded "$1" "$2"; done
pin_napi() { # core, interfaces...
  local core=$1; shift
  for i in "$@"; do for t in $(pgrep "^napi/$i-" || true); do taskset -pc "$core" "$t" >/dev/null; done; done
}
pin_napi 0 c0 p0

conf() { # offload engine
  cat <<CONF
version: v1
admin: {healthcheck_endpoint: "http://10.201.1.1:8086", offload_engine: $1}
auth: {type: static, realm: stunner.l7mp.io, credentials: {username: user, password: pass}}
listeners:
  - {name: udp, protocol: TURN-UDP, address: 10.201.1.1, port: 3478, routes: [peers]}
clusters:
  - {name: peers, endpoints: [10.201.2.0/24]}
CONF
}
conf None >"$tmp/none.conf"; conf TC >"$tmp/tc.conf"; conf XDP >"$tmp/xdp.conf"
wait_udp() { for _ in $(seq 100); do ip netns exec $G ss -lun | grep -q ":$1 " && return 0; sleep 0.05; done; }
start_stunnerd() { # config file
  ip netns exec $G taskset -c 1 "$bin/stunnerd" -c "$1" -l all:WARN,offload:INFO 2>"$tmp/stunnerd.log" &
  pid=$!; port=3478; wait_udp 3478
  # Workers take up a started engine within a second.
  sleep 1.5
}
start_coturn() {
  ip netns exec $G taskset -c 1 turnserver -n --no-cli --log-file=stdout --simple-log -L 10.201.1.1 \
    -E 10.201.1.1 -p 3479 -u user:pass -r stunner.l7mp.io --lt-cred-mech --no-tls --no-dtls --no-tcp \
    --min-port 40000 --max-port 59999 >"$tmp/coturn.log" 2>&1 &
  pid=$!; port=3479; wait_udp 3479; sleep 0.5
}
stop() { kill -9 "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; sleep 0.3; }
load() { # label, extra args
  local label=$1; shift
  ip netns exec $C taskset -c 0 "$bin/turnload" --server "10.201.1.1:$port" --bind 10.201.1.2 \
    --peer-ip 10.201.2.2 --peer-netns $P --server-pid "$pid" --server-core 1 --label "$label" "$@"
}
KEYS="core_cpu_us_per_datagram cpu_us_per_datagram delivered_per_s loss_pct rtt_p50_ms rtt_p99_ms"
get() { grep -o "$2=[0-9.]*" "$1" 2>/dev/null | cut -d= -f2 || true; }
median() { # key, files...
  local key=$1; shift
  local v; v=$(for f in "$@"; do get "$f" "$key"; done | sort -g)
  [ -n "$v" ] || return 0
  printf '%s\n' "$v" | sed -n "$(( ($(printf '%s\n' "$v" | wc -l) + 1) / 2 ))p"
}
case_() { # name, turnload args...
  local name=$1; shift
  case "$name" in *"${ONLY:-}"*) ;; *) return 0 ;; esac
  for r in $(seq "$REPS"); do
    start_stunnerd "$tmp/none.conf"; load user_space "$@" >"$tmp/$name.u.$r"; stop
    start_stunnerd "$tmp/tc.conf"
    grep -q "offload running" "$tmp/stunnerd.log" || { echo "SKIPPED: the TC engine did not start: $(grep -m1 offload "$tmp/stunnerd.log")"; exit 0; }
    load offload "$@" >"$tmp/$name.o.$r"; stop
    start_stunnerd "$tmp/xdp.conf"
    grep -q 'xdp=\["g1", "g2"\]' "$tmp/stunnerd.log" || { echo "SKIPPED: the XDP engine did not start: $(grep -m1 offload "$tmp/stunnerd.log")"; exit 0; }
    if [ "${XDP_THREADED:-1}" = 1 ]; then threaded $G g1; threaded $G g2; pin_napi 1 g1 g2; fi
    load xdp "$@" >"$tmp/$name.x.$r"
    # Which program relayed: the XDP share of the kernel-relayed datagrams.
    sleep 1.2
    ip netns exec $G curl -s http://10.201.1.1:8086/status | jq -r '.offload.by_program
      | (.xdp.packets_to_peers + .xdp.packets_to_clients) as $x
      | ($x + .tc.packets_to_peers + .tc.packets_to_clients) as $all
      | "xdp_share=\(if $all > 0 then $x / $all else 0 end)"' >>"$tmp/$name.x.$r" || true
    stop
    start_coturn; load coturn "$@" >"$tmp/$name.c.$r"; stop
  done
  for key in $KEYS; do
    o=$(median "$key" "$tmp/$name".o.*); u=$(median "$key" "$tmp/$name".u.*); c=$(median "$key" "$tmp/$name".c.*)
    x=$(median "$key" "$tmp/$name".x.*)
    [ -n "$o" ] && [ -n "$u" ] || continue
    ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
    printf '%-22s %-26s xdp=%-9s tc=%-9s user_space=%-9s coturn=%-9s xdp_vs_user_space=%-6s tc_vs_user_space=%-6s xdp_vs_tc=%-6s tc_vs_coturn=%s\n' \
      "$name" "$key" "$x" "$o" "$u" "$c" "$(ratio "$x" "$u")" "$(ratio "$o" "$u")" "$(ratio "$x" "$o")" "$(ratio "$o" "$c")"
  done
  printf '%-22s %-26s %s\n' "$name" xdp_share "$(median xdp_share "$tmp/$name".x.*)"
}
echo "machine: $(nproc) cores, kernel $(uname -r), $PROFILE build, median of $REPS runs, veth topology in namespaces"
case_ "offload_100B_closed" --allocations "$ALLOCS" --size 100 --duration "$DURATION"
case_ "offload_1200B_closed" --allocations "$ALLOCS" --size 1200 --duration "$DURATION"
case_ "offload_paced_20k" --allocations "$ALLOCS" --size 100 --rate 20000 --duration "$DURATION"
