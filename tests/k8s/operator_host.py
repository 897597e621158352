"""The operator binary run on the host against the real API server, for what the chart's
single pod does not show on cue: Lease take-over and loss, the finalizer and metrics on
SIGTERM, the v1 Endpoints source (by flag, and as the fallback when RBAC refuses
EndpointSlices). These replace the operator's tests against fake-kube-api.

Backends here are a Service without a selector whose Endpoints and EndpointSlices the case
writes itself (the API server's mirroring controller copies the Endpoints into a slice, as
in any cluster); nothing is sent to those addresses, they only appear in configs.
"""

import json
import os
import re
import signal
import subprocess
import time

from kube import *  # noqa: F403 - the shared helpers

NS = "e2e-host"
CLASS = "e2e-host"
LEASE = "92062b70.l7mp.io"
DEPLOYMENT_IMAGE = "ghcr.io/stunner-rs/stunnerd:0.1.0"


def manifests():
    return f"""
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata:
  name: {CLASS}
spec:
  controllerName: "stunner.l7mp.io/gateway-operator"
  parametersRef: {{group: stunner.l7mp.io, kind: GatewayConfig, name: {CLASS}-config, namespace: {NS}}}
---
apiVersion: stunner.l7mp.io/v1
kind: GatewayConfig
metadata: {{name: {CLASS}-config, namespace: {NS}}}
spec: {{realm: stunner.l7mp.io, authType: static, userName: user-1, password: pass-1}}
---
apiVersion: stunner.l7mp.io/v1
kind: Dataplane
metadata: {{name: default}}
spec: {{image: "{DEPLOYMENT_IMAGE}", disableHealthCheck: true}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: udp-gateway, namespace: {NS}}}
spec:
  gatewayClassName: {CLASS}
  listeners: [{{name: udp-listener, port: 3478, protocol: TURN-UDP}}]
---
apiVersion: stunner.l7mp.io/v1
kind: UDPRoute
metadata: {{name: media, namespace: {NS}}}
spec:
  parentRefs: [{{name: udp-gateway}}]
  rules: [{{backendRefs: [{{name: media, port: 9}}]}}]
---
apiVersion: v1
kind: Service
metadata: {{name: media, namespace: {NS}}}
spec:
  ports: [{{port: 9, protocol: UDP}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: media-manual
  namespace: {NS}
  labels: {{kubernetes.io/service-name: media, endpointslice.kubernetes.io/managed-by: e2e}}
addressType: IPv4
ports: [{{port: 9, protocol: UDP}}]
endpoints: [{{addresses: ["10.244.7.7"], conditions: {{ready: true}}}}]
"""


def put_endpoints(ips):
    apply(json.dumps({
        "apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "media", "namespace": NS},
        "subsets": [{"addresses": [{"ip": ip} for ip in ips], "notReadyAddresses": [{"ip": "10.244.5.5"}],
                     "ports": [{"port": 9, "protocol": "UDP"}]}]}))


class Operator:
    """`stunner-gateway-operator` on the host, its CDS and health on loopback."""

    def __init__(self, tag, *extra, kubeconfig=None, metrics=False, env=None):
        self.cds = free_port()
        self.metrics = free_port() if metrics else None
        e = {k: v for k, v in os.environ.items() if k != "KUBERNETES_SERVICE_HOST"}
        if kubeconfig:
            e["KUBECONFIG"] = kubeconfig
        e.update(env or {})
        self.log_path = os.path.join(ENV_DIR, f"operator-{tag}.log")
        self.log = open(self.log_path, "w")
        self.p = subprocess.Popen(
            ["target/debug/stunner-gateway-operator", *extra,
             "--config-discovery-address", f"127.0.0.1:{self.cds}",
             "--health-probe-bind-address", f"127.0.0.1:{free_port()}",
             "--metrics-bind-address", f"127.0.0.1:{self.metrics}" if self.metrics else "0",
             "--throttle-timeout", "50ms", "--zap-log-level", "info"],
            env=e, stdout=self.log, stderr=self.log)

    def config(self):
        return json.loads(http_get(self.cds, f"/api/v1/configs/{NS}/udp-gateway")[1])

    def endpoints(self):
        """The first cluster's endpoint IPs on the CDS, sorted, without port suffixes and
        without the Service's ClusterIP (which the operator adds, as upstream does)."""
        eps = self.config()["clusters"][0]["endpoints"]
        cip = kget("service", "-n", NS, "media")["spec"]["clusterIP"]
        ips = sorted(e.split(":")[0] for e in eps)
        assert cip in ips, f"the ClusterIP {cip} is missing from {ips}"
        return [ip for ip in ips if ip != cip]

    def stop(self):
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait(timeout=10)
        self.log.close()

    def tail(self):
        with open(self.log_path) as f:
            return f.read()[-1500:]


def with_operator(op, body):
    try:
        body(op)
    except Exception:
        print(f"--- operator log (tail)\n{op.tail()}")
        raise
    finally:
        op.stop()


def setup():
    """The manifests, idempotently; what an earlier case's operator wrote is removed."""
    for ns in (NS, SYSTEM_NS):
        until(f"namespace {ns} not to be terminating", lambda: kubectl(
            "get", "namespace", ns, "--ignore-not-found", "-o", "jsonpath={.status.phase}").strip() != "Terminating", timeout=120)
        ensure_ns(ns)
        if ns not in C.namespaces:
            C.namespaces.append(ns)
    if CLASS not in C.classes:
        C.classes.append(CLASS)
    if ("dataplane", "default") not in C.cluster_objects:
        C.cluster_objects.append(("dataplane", "default"))
    kubectl("delete", "deployment,service", "-n", NS, "-l", "stunner.l7mp.io/owned-by=stunner", "--wait=true", timeout=60)
    kubectl("delete", "lease", "-n", SYSTEM_NS, LEASE, "--ignore-not-found")
    kubectl("annotate", "gateway", "-n", NS, "udp-gateway", "stunner.l7mp.io/disable-session-affinity-", check=False)
    kubectl("apply", "--server-side", "-f", "deploy/crds/stunner-crds.yaml", "-f", "deploy/crds/gateway-api-crds.yaml")
    apply(manifests())
    put_endpoints(["10.244.1.1"])


def deployment():
    """The Gateway's Deployment, or None."""
    out = kubectl("get", "deployment", "-n", NS, "udp-gateway", "--ignore-not-found", "-o", "json")
    return json.loads(out) if out.strip() else None


def micro_now():
    return time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())


def hold_lease(holder, seconds):
    now = micro_now()
    kubectl("apply", "--server-side", "--force-conflicts", "--field-manager", "e2e", "-f", "-", input=json.dumps({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": LEASE, "namespace": SYSTEM_NS},
        "spec": {"holderIdentity": holder, "leaseDurationSeconds": seconds, "renewTime": now, "acquireTime": now}}))


def case_operator_lease():
    """A follower serves the config over CDS and writes nothing; it takes over a Lease
    that expires, and stops writing once another replica holds it again."""
    setup()
    hold_lease("other-replica", 2)

    def body(op):
        until("the config on the follower's CDS", lambda: op.config()["admin"]["name"] == f"{NS}/udp-gateway", timeout=30)
        assert deployment() is None, "a follower wrote the Deployment"
        until("the take-over of the expired Lease", deployment, timeout=30)
        holder = kget("lease", "-n", SYSTEM_NS, LEASE)["spec"]["holderIdentity"]
        assert holder == "replica-under-test", holder
        hold_lease("other-replica", 60)
        time.sleep(4)  # more than one renewal period (lease duration / 5)
        kubectl("annotate", "gateway", "-n", NS, "udp-gateway", "stunner.l7mp.io/disable-session-affinity=true")
        time.sleep(3)
        svc = kget("service", "-n", NS, "udp-gateway")
        assert svc["spec"].get("sessionAffinity") == "ClientIP", "a replica that lost the Lease wrote"
        print("    follower -> leader on expiry -> follower when another replica holds the Lease")

    with_operator(Operator("lease", "--leader-elect", env={"POD_NAME": "replica-under-test", "POD_NAMESPACE": SYSTEM_NS}), body)


def case_operator_finalizer():
    """Metrics are served; with --enable-finalizer a SIGTERM deletes the dataplanes and
    leaves the Gateways Programmed=False, "operator unavailable"."""
    setup()

    def body(op):
        until("the Deployment", deployment, timeout=30)
        until("an acked generation", lambda: re.search(r"stunner_gateway_operator_generation_last_acked [1-9]",
                                                      http_get(op.metrics, "/metrics")[1]), timeout=20)
        m = http_get(op.metrics, "/metrics")[1]
        for name in ["stunner_gateway_operator_render_total", "stunner_gateway_operator_render_time_seconds_count",
                     'stunner_gateway_operator_update_total{result="success"}', "stunner_gateway_operator_update_time_seconds_sum",
                     'stunner_gateway_operator_resource_operations_total{kind="Deployment",operation="apply"}',
                     "stunner_gateway_operator_renderer_loop_last_active_timestamp_seconds"]:
            assert name in m, f"{name} missing from the metrics"
        op.p.send_signal(signal.SIGTERM)
        op.p.wait(timeout=20)
        until("the Deployment and Service to be deleted", lambda: not kget("deployment,service", "-n", NS, "-l",
                                                                          "stunner.l7mp.io/owned-by=stunner")["items"], timeout=30)
        gw = kget("gateway", "-n", NS, "udp-gateway")
        prog = next(c for c in gw["status"]["conditions"] if c["type"] == "Programmed")
        assert prog["status"] == "False" and "operator unavailable" in prog["message"], prog

    with_operator(Operator("finalizer", "--enable-finalizer", metrics=True), body)


def case_operator_endpoints():
    """--disable-endpontslice-controller takes the v1 Endpoints (ready and not ready), not
    the EndpointSlices that are also there; and no unchanged Deployment is written again."""
    setup()

    def body(op):
        until("the Endpoints addresses on the CDS", lambda: op.endpoints() == ["10.244.1.1", "10.244.5.5"], timeout=30)
        gen = until("the Deployment", deployment, timeout=30)["metadata"]["generation"]
        put_endpoints(["10.244.1.1", "10.244.1.2"])
        until("the new address on the CDS", lambda: op.endpoints() == ["10.244.1.1", "10.244.1.2", "10.244.5.5"], timeout=30)
        time.sleep(1)
        assert deployment()["metadata"]["generation"] == gen, "the Deployment was rewritten without a change"

    with_operator(Operator("endpoints", "--disable-endpontslice-controller"), body)


def case_operator_rbac_fallback():
    """As a ServiceAccount whose ClusterRole leaves out discovery.k8s.io, the operator is
    refused EndpointSlices by real RBAC, falls back to v1 Endpoints and watches them."""
    setup()
    sa = "op-no-slices"
    kubectl("create", "serviceaccount", sa, "-n", NS, check=False)
    apply(json.dumps({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": sa},
                      "rules": [{"apiGroups": ["", "apps", "coordination.k8s.io", "gateway.networking.k8s.io", "stunner.l7mp.io"],
                                 "resources": ["*"], "verbs": ["*"]}]}))
    kubectl("create", "clusterrolebinding", sa, f"--clusterrole={sa}", f"--serviceaccount={NS}:{sa}", check=False)
    C.cluster_objects += [("clusterrolebinding", sa), ("clusterrole", sa)]
    token = kubectl("create", "token", sa, "-n", NS, "--duration", "1h").strip()
    with open(os.environ["KUBECONFIG"]) as f:
        kc = re.sub(r"token: .*", f"token: {token}", f.read())
    path = os.path.join(ENV_DIR, "kubeconfig-no-slices")
    with open(path, "w") as f:
        f.write(kc)
    denied = kubectl("--kubeconfig", path, "auth", "can-i", "list", "endpointslices.discovery.k8s.io", check=False).strip()
    assert denied == "no", f"the ServiceAccount may list EndpointSlices: {denied}"

    def body(op):
        until("the Endpoints addresses on the CDS", lambda: op.endpoints() == ["10.244.1.1", "10.244.5.5"], timeout=30)
        put_endpoints(["10.244.1.1", "10.244.1.2"])
        until("the new address on the CDS (the fallback watches)",
              lambda: op.endpoints() == ["10.244.1.1", "10.244.1.2", "10.244.5.5"], timeout=30)

    with_operator(Operator("rbac", kubeconfig=path), body)


CASES = [case_operator_lease, case_operator_finalizer, case_operator_endpoints, case_operator_rbac_fallback]
