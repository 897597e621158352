#!/usr/bin/env bash
# Paired A/B of stunnerd at two commits: the same config and turnload runs as bench/run.sh's
# stunnerd cases, server on core 1, load on core 0, alternated REPS times; prints the
# medians and the ratio head/base. How src/batch.rs's move to quinn-udp was checked.
# Everything on 127.0.0.1.
#
#   bench/ab.sh BASE [HEAD]   # git revisions; HEAD defaults to the working tree
#                             # DURATION=5 ALLOCS=10 REPS=5
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 1 ] || { echo "usage: bench/ab.sh BASE [HEAD]" >&2; exit 2; }
base=$1 head=${2:-}
DURATION=${DURATION:-5}
ALLOCS=${ALLOCS:-10}
REPS=${REPS:-5}
tmp=$(mktemp -d)
wt=$tmp/tree
trap 'kill -9 ${pid:-} 2>/dev/null || true; git worktree remove --force "$wt" 2>/dev/null || true; rm -rf "$tmp"' EXIT
# Both builds share one target directory (only our crates rebuild); each binary is copied
# out before the next build.
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
out=$CARGO_TARGET_DIR/release
build() { # dir, name
  (cd "$1" && cargo build --release -q -p stunnerd -p turnload)
  cp "$out/stunnerd" "$tmp/stunnerd-$2"
  cp "$out/turnload" "$tmp/turnload-$2"
}
git worktree add -q --detach "$wt" "$base"
build "$wt" base
if [ -n "$head" ]; then
  git -C "$wt" checkout -q --detach "$head"
  build "$wt" head
else
  build . head
fi
cat > "$tmp/c.conf" <<CONF
version: v1
admin: {healthcheck_endpoint: "http://127.0.0.1:18099"}
auth: {type: static, realm: stunner.l7mp.io, credentials: {username: user, password: pass}}
listeners:
  - {name: udp, protocol: TURN-UDP, address: 127.0.0.1, port: 23478, routes: [loop]}
clusters:
  - {name: loop, endpoints: [127.0.0.1/32]}
CONF
wait_port() {
  for _ in $(seq 50); do
    if ss -lun 2>/dev/null | grep -q ":$1 "; then return 0; fi
    sleep 0.05
  done
}
one() { # binary, label, turnload args...: one run, prints turnload's figures
  local b=$1 label=$2; shift 2
  taskset -c 1 "$b" -c "$tmp/c.conf" -u 1 -l all:WARN 2>/dev/null &
  pid=$!; wait_port 23478; sleep 0.2
  taskset -c 0 "$tmp/turnload-head" --server 127.0.0.1:23478 --server-pid "$pid" --label "$label" "$@"
  kill -9 "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; sleep 0.3
}
median() { sort -g | awk '{v[NR]=$1} END {print v[int((NR + 1) / 2)]}'; }
case_() { # name, key, turnload args...
  local name=$1 key=$2; shift 2
  for r in $(seq "$REPS"); do
    one "$tmp/stunnerd-base" base "$@" | grep -o "$key=[0-9.]*" | cut -d= -f2 >>"$tmp/$name.base"
    one "$tmp/stunnerd-head" head "$@" | grep -o "$key=[0-9.]*" | cut -d= -f2 >>"$tmp/$name.head"
  done
  a=$(median <"$tmp/$name.base"); b=$(median <"$tmp/$name.head")
  printf '%-30s %-22s base=%-8s head=%-8s ratio=%s\n' "$name" "$key" "$a" "$b" \
    "$(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.3f", b / a }')"
}
echo "stunnerd base $(git rev-parse --short "$base") vs head ${head:-working tree}, median of $REPS alternated runs, ratio = head/base"
case_ channeldata_100B_closed cpu_us_per_datagram --allocations "$ALLOCS" --size 100 --duration "$DURATION"
case_ channeldata_1200B_closed cpu_us_per_datagram --allocations "$ALLOCS" --size 1200 --duration "$DURATION"
case_ channeldata_1200B_burst8_gso cpu_us_per_datagram --allocations "$ALLOCS" --size 1200 --window 16 --burst 8 --gso --duration "$DURATION"
case_ paced_40k_pps cpu_us_per_datagram --allocations "$ALLOCS" --size 100 --rate 40000 --duration "$DURATION"
case_ allocation_churn cpu_us_per_allocation --churn --allocations 32 --duration "$DURATION"
