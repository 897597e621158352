#!/usr/bin/env bash
# Operator scale benchmark (issue 14, docs/SCALING.md): brings up the real control plane
# of scripts/k8s-env in target/k8s-scale, installs the CRDs, runs bench/operator_scale.py
# against the release operator, and brings the cluster down. Needs root and Go (for the
# first build of the control plane), like scripts/test-k8s.
#
#   bench/operator-scale.sh                      # 1,000 Nodes, 200 namespaces, 50 updates/s for 60 s
#   NODES=100 NAMESPACES=20 STORM_SECONDS=10 bench/operator-scale.sh   # a small run
#   TINY=1 bench/operator-scale.sh   # the suite's smoke run: debug build, 50 Nodes, 10
#                                    # namespaces, 5 s; fails only if an update never
#                                    # reaches the CDS (no timing goal)
#   UPSTREAM_OPERATOR_BIN=/path/to/stunner-gateway-operator bench/operator-scale.sh
#                                    # the same run again, on a fresh cluster, with that
#                                    # (upstream Go) operator; then both side by side.
#                                    # The upstream run may take UPSTREAM_FIRST_RENDER_TIMEOUT
#                                    # s (2400) for its first render, ours FIRST_RENDER_TIMEOUT
#                                    # s (600); past it a run has partial figures only
#
# The upstream operator is not built by anything here: the Go module proxy refuses
# github.com/l7mp/stunner-gateway-operator (docs/SCALING.md); pass a binary you have.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${K8S_SCALE_DIR:-$PWD/target/k8s-scale}
mkdir -p "$(dirname "$dir")"
if [ -n "${TINY:-}" ]; then
  export NODES=${NODES:-50} NAMESPACES=${NAMESPACES:-10} STORM_SECONDS=${STORM_SECONDS:-5} RATE=${RATE:-20}
  export SMOKE=1 OPERATOR_BIN=target/debug/stunner-gateway-operator STUNNERCTL_BIN=target/debug/stunnerctl
  cargo build -q -p stunner-gateway-operator -p stunnerctl
else
  cargo build --release -q -p stunner-gateway-operator -p stunnerctl
fi
ours=${OPERATOR_BIN:-target/release/stunner-gateway-operator}
if [ -n "${UPSTREAM_OPERATOR_BIN:-}" ] && [ ! -x "$UPSTREAM_OPERATOR_BIN" ]; then
  echo "bench/operator-scale.sh: UPSTREAM_OPERATOR_BIN=$UPSTREAM_OPERATOR_BIN is not an executable" >&2
  exit 2
fi
trap 'scripts/k8s-env down "$dir" >/dev/null 2>&1 || true' EXIT
echo "machine: $(nproc) cores, kernel $(uname -r), ${TINY:+debug (smoke run)}${TINY:-release} operator, control plane of scripts/k8s-env"
run() { # name, operator binary, first-render timeout: a fresh cluster, the world, the run; figures in $dir/NAME.json
  scripts/k8s-env down "$dir" >/dev/null 2>&1 || true
  scripts/k8s-env up "$dir" >/dev/null
  # shellcheck disable=SC1091
  . "$dir/env"
  kubectl apply --server-side -f charts/stunner-gateway-operator/crds/ >/dev/null
  for c in gatewayclasses.gateway.networking.k8s.io gateways.gateway.networking.k8s.io \
    udproutes.stunner.l7mp.io gatewayconfigs.stunner.l7mp.io dataplanes.stunner.l7mp.io; do
    kubectl wait --for condition=established --timeout=60s "crd/$c" >/dev/null
  done
  rm -f "$dir/$1.json"
  echo "== $1: $2"
  OPERATOR_BIN=$2 FIRST_RENDER_TIMEOUT=$3 RESULT_JSON=$dir/$1.json K8S_ENV_DIR=$dir python3 bench/operator_scale.py
}
if [ -z "${UPSTREAM_OPERATOR_BIN:-}" ]; then
  run ours "$ours" "${FIRST_RENDER_TIMEOUT:-600}"
  exit
fi
# Each run's own goal verdict is printed; the side-by-side table follows both.
rc=0
run ours "$ours" "${FIRST_RENDER_TIMEOUT:-600}" || rc=$?
run upstream "$UPSTREAM_OPERATOR_BIN" "${UPSTREAM_FIRST_RENDER_TIMEOUT:-2400}" || true
echo "== side by side (${NODES:-1000} Nodes, ${NAMESPACES:-200} namespaces, ${RATE:-50} updates/s for ${STORM_SECONDS:-60} s)"
for r in ours upstream; do
  [ -f "$dir/$r.json" ] || { echo "the $r run gave no figures (see above; logs in $dir)"; exit 1; }
done
python3 bench/operator_scale.py --compare "$dir/ours.json" "$dir/upstream.json"
exit $rc
