"""Our operator and upstream's (Go, v1.2.1) on one real API server, on the same manifests
(issue 13): the stunnerd configs each serves over CDS, the Deployments and Services each
writes and the statuses each sets are diffed field by field. Every difference must match
an entry of DIFFERENCES (each is in docs/MIGRATING.md, "What we fixed" or "Known
differences"), and every entry must still match a difference.

The two run at once, on the host, each with its own GatewayClass and controller name
(`--controller-name`) in its own namespace, so neither sees the other's objects; names
that carry the namespace or class are compared with those replaced by NS and CLASS.
Status condition messages are free text: printed where they differ, not compared (types,
statuses, reasons and observed generations are).

Upstream's binary is not built here (the Go module proxy refuses
github.com/l7mp/stunner-gateway-operator): K8S_E2E_UPSTREAM_OPERATOR names one, and
without it the case is skipped.
"""

import json
import re
import os
import subprocess
import time

from kube import *  # noqa: F403 - the shared helpers

DP = "diff-dataplane"
SIDES = {
    # side: (namespace, class, controller name)
    "upstream": ("diff-up", "diff-up", "stunner.l7mp.io/diff-upstream"),
    "ours": ("diff-ours", "diff-ours", "stunner.l7mp.io/diff-ours"),
}


def world(ns, cls, controller):
    """The manifests: two Gateways (LoadBalancer and NodePort), three kinds of route,
    Service and StaticService backends, a route to a missing Service, a listener of a
    protocol STUNner does not serve."""
    return f"""
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {{name: {cls}}}
spec:
  controllerName: "{controller}"
  parametersRef: {{group: stunner.l7mp.io, kind: GatewayConfig, name: config, namespace: {ns}}}
  description: "operator diff"
---
apiVersion: stunner.l7mp.io/v1
kind: GatewayConfig
metadata: {{name: config, namespace: {ns}}}
spec: {{realm: stunner.l7mp.io, authType: static, userName: user-1, password: pass-1, dataplane: {DP}}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: udp-gateway
  namespace: {ns}
  labels: {{team: media}}
  annotations: {{stunner.l7mp.io/enable-mixed-protocol-lb: "true"}}
spec:
  gatewayClassName: {cls}
  listeners:
    - {{name: udp-listener, port: 3478, protocol: TURN-UDP}}
    - {{name: tcp-listener, port: 3479, protocol: TURN-TCP}}
    - {{name: http-listener, port: 8000, protocol: HTTP}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: np-gateway
  namespace: {ns}
  annotations: {{stunner.l7mp.io/service-type: NodePort}}
spec:
  gatewayClassName: {cls}
  listeners:
    - {{name: udp-listener, port: 3480, protocol: TURN-UDP}}
---
apiVersion: stunner.l7mp.io/v1
kind: UDPRoute
metadata: {{name: media, namespace: {ns}}}
spec:
  parentRefs: [{{name: udp-gateway}}]
  rules: [{{backendRefs: [{{name: media, port: 9}}]}}]
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: UDPRoute
metadata: {{name: legacy, namespace: {ns}}}
spec:
  parentRefs: [{{name: np-gateway}}]
  rules: [{{backendRefs: [{{name: media, port: 9}}]}}]
---
apiVersion: stunner.l7mp.io/v1
kind: StaticService
metadata: {{name: static-media, namespace: {ns}}}
spec: {{prefixes: ["10.1.0.0/24", "10.2.0.5/32"]}}
---
apiVersion: stunner.l7mp.io/v1
kind: UDPRoute
metadata: {{name: static, namespace: {ns}}}
spec:
  parentRefs: [{{name: np-gateway}}]
  rules: [{{backendRefs: [{{group: stunner.l7mp.io, kind: StaticService, name: static-media}}]}}]
---
apiVersion: stunner.l7mp.io/v1
kind: UDPRoute
metadata: {{name: dangling, namespace: {ns}}}
spec:
  parentRefs: [{{name: udp-gateway}}]
  rules: [{{backendRefs: [{{name: no-such-service, port: 9}}]}}]
---
apiVersion: v1
kind: Service
metadata: {{name: media, namespace: {ns}}}
spec:
  ports: [{{name: media, port: 9, protocol: UDP}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: media-1
  namespace: {ns}
  labels: {{kubernetes.io/service-name: media, endpointslice.kubernetes.io/managed-by: operator-diff}}
addressType: IPv4
ports: [{{name: media, port: 9, protocol: UDP}}]
endpoints:
  - {{addresses: [10.244.7.1], conditions: {{ready: true}}}}
  - {{addresses: [10.244.7.2], conditions: {{ready: true}}}}
"""


DATAPLANE = f"""
apiVersion: stunner.l7mp.io/v1
kind: Dataplane
metadata: {{name: {DP}}}
spec:
  image: docker.io/l7mp/stunnerd:1.2.1
  replicas: 0
  command: [stunnerd]
  args: ["-w", "--udp-thread-num=16"]
"""

# Differences allowed, as (pattern over the flattened path, `*` any text, reason); the reasons are the
# entries of docs/MIGRATING.md. Filled from what the first side-by-side run found.
DIFFERENCES = [
    ("deployment.*.env[name=STUNNER_CONFIG_ORIGIN].value",
     "stunnerd pods reach the CDS through its Service, not the operator's own address"),
    ("deployment.*.env[name=STUNNER_POD_IPS].*",
     "dual stack: the pod's addresses for relays of the other family"),
    ("gateways.*.listeners[name=*].conditions[type=Programmed].*",
     "each listener gets its Programmed condition (Gateway API); upstream sets none"),
    ("gateways.udp-gateway.conditions[type=Programmed].*",
     "a listener STUNner does not serve (HTTP) does not keep the Gateway from Programmed"),
    ("cds.*.listeners[name=*].routes[*]",
     "a listener's routes are sorted by name; upstream lists them in watch order"),
]


class Side:
    def __init__(self, name, binary):
        self.name = name
        self.ns, self.cls, self.controller = SIDES[name]
        self.cds = free_port()
        self.log_path = os.path.join(ENV_DIR, f"operator-diff-{name}.log")
        env = {k: v for k, v in os.environ.items() if k != "KUBERNETES_SERVICE_HOST"}
        self.p = subprocess.Popen(
            [binary, "--controller-name", self.controller, "--dataplane-mode", "managed",
             "--config-discovery-address", f"127.0.0.1:{self.cds}",
             "--health-probe-bind-address", f"127.0.0.1:{free_port()}",
             "--metrics-bind-address", f"127.0.0.1:{free_port()}", "--zap-log-level", "info"],
            env=env, stdout=open(self.log_path, "w"), stderr=subprocess.STDOUT)

    def stop(self):
        if self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()

    def tail(self):
        with open(self.log_path) as f:
            return f.read()[-2000:]

    def snapshot(self):
        """Everything compared, with this side's namespace and class replaced."""
        body = json.loads(http_get(self.cds, "/api/v1/configs")[1])
        out = {"cds": {c["admin"]["name"]: c for c in body.pop("items")}, "cds_list": body}
        # NodePorts are the API server's choice: a public port that is one of this side's
        # NodePorts is compared as such.
        node_ports = {p.get("nodePort") for svc in kget("service", "-n", self.ns)["items"]
                      for p in svc["spec"].get("ports", [])} - {None}
        for c in out["cds"].values():
            for lis in c.get("listeners", []):
                if lis.get("public_port") in node_ports:
                    lis["public_port"] = "<a NodePort>"
        for kind in ("deployment", "service"):
            items = kget(kind, "-n", self.ns, "-l", "stunner.l7mp.io/owned-by=stunner")["items"]
            out[kind] = {o["metadata"]["name"]: scrub(o) for o in items}
        out["gatewayclass"] = {"CLASS": kget("gatewayclass", self.cls).get("status", {})}
        for resource, label in (("gateways.gateway.networking.k8s.io", "gateways"),
                                ("udproutes.stunner.l7mp.io", "udproutes"),
                                ("udproutes.gateway.networking.k8s.io", "udproutes-gwapi")):
            items = kget(resource, "-n", self.ns)["items"]
            out[label] = {o["metadata"]["name"]: o.get("status", {}) for o in items}
        text = json.dumps(out, sort_keys=True)
        # The backend Service's ClusterIP (the operators add it to the endpoints) is the API
        # server's choice.
        cip = kget("service", "-n", self.ns, "media")["spec"]["clusterIP"]
        for a, b in ((cip, "MEDIA-CLUSTER-IP"), (self.controller, "CONTROLLER"), (self.ns, "NS"), (self.cls, "CLASS")):
            text = text.replace(a, b)
        return json.loads(text)


def scrub(o):
    """An object without what the API server or chance decides (uids, versions, times,
    allocated IPs and ports)."""
    md = o["metadata"]
    for k in ("uid", "resourceVersion", "creationTimestamp", "managedFields", "generation", "selfLink"):
        md.pop(k, None)
    # kube-controller-manager's rollout counter: how often the object was rewritten.
    md.get("annotations", {}).pop("deployment.kubernetes.io/revision", None)
    for ref in md.get("ownerReferences", []):
        ref.pop("uid", None)
    spec = o.get("spec", {})
    for k in ("clusterIP", "clusterIPs"):
        spec.pop(k, None)
    for p in spec.get("ports", []):
        if "nodePort" in p:
            p["nodePort"] = "<allocated>"
    if o["kind"] == "Deployment":
        o.pop("status", None)
    return o


def flatten(v, path=""):
    """{dotted path: leaf}; list items keyed by their name or type where they have one."""
    out = {}
    if isinstance(v, dict):
        for k, x in v.items():
            out.update(flatten(x, f"{path}.{k}" if path else k))
    elif isinstance(v, list):
        for i, x in enumerate(v):
            key = str(i)
            if isinstance(x, dict):
                for name in ("name", "type"):
                    if isinstance(x.get(name), str):
                        key = f"{name}={x[name]}"
                        break
            out.update(flatten(x, f"{path}[{key}]"))
    else:
        out[path] = v
    return out


def matches(path, pattern):
    return re.fullmatch(".*".join(map(re.escape, pattern.split("*"))), path) is not None


def timeless(path):
    return path.endswith(".lastTransitionTime")


def compare(up, ours):
    """[(path, upstream value, our value)] of every differing leaf, messages apart."""
    a, b = flatten(up), flatten(ours)
    diffs, messages = [], []
    for path in sorted(set(a) | set(b)):
        if timeless(path):
            continue
        x, y = a.get(path, "<absent>"), b.get(path, "<absent>")
        if x == y:
            continue
        (messages if path.endswith(".message") else diffs).append((path, x, y))
    return diffs, messages


def settled(sides):
    """Snapshots of every side once two taken 4 s apart agree (and each side's CDS has
    both Gateways)."""
    def take():
        return {s.name: s.snapshot() for s in sides}
    last = None
    end = time.time() + 120
    while time.time() < end:
        try:
            snap = take()
        except (OSError, ValueError, AssertionError) as e:  # a CDS not up yet
            last = None
            print(f"    not yet: {e}")
            time.sleep(2)
            continue
        stable = {n: {p: x for p, x in flatten(v).items() if not timeless(p)} for n, v in snap.items()}
        if all(len(v["cds"]) >= 2 for v in snap.values()) and stable == last:
            return snap
        if last:
            moving = sorted(f"{n}: {p}" for n in stable for p in set(stable[n]) | set(last.get(n, {}))
                            if stable[n].get(p) != last.get(n, {}).get(p))
            print(f"    still changing: {moving[:8]}")
        last = stable
        time.sleep(4)
    raise AssertionError("the operators did not settle within 120 s: "
                         + ", ".join(f"{n}: {len(v['cds'])} configs" for n, v in (last or {}).items()))


def case_upstream_operator():
    binary = os.environ.get("K8S_E2E_UPSTREAM_OPERATOR", "")
    if not os.access(binary, os.X_OK):
        raise Skip("no upstream operator: the Go module proxy refuses github.com/l7mp/stunner-gateway-operator, "
                       "so nothing builds it; set K8S_E2E_UPSTREAM_OPERATOR to a v1.2.1 binary to run this case")
    kubectl("apply", "--server-side", "-f", "deploy/crds/stunner-crds.yaml", "-f", "deploy/crds/gateway-api-crds.yaml")
    apply(DATAPLANE)
    C.cluster_objects.append(("dataplane", DP))
    for side, (ns, cls, controller) in SIDES.items():
        ensure_ns(ns)
        C.namespaces.append(ns)
        C.classes.append(cls)
        apply(world(ns, cls, controller))
    sides = [Side("upstream", binary), Side("ours", "target/debug/stunner-gateway-operator")]
    try:
        snap = settled(sides)
    except Exception:
        for s in sides:
            print(f"--- {s.name} operator log (tail)\n{s.tail()}")
        raise
    finally:
        for s in sides:
            s.stop()
    diffs, messages = compare(snap["upstream"], snap["ours"])
    for path, x, y in messages:
        print(f"    message differs {path}:\n      upstream: {x}\n      ours:     {y}")
    unexplained, used = [], set()
    for path, x, y in diffs:
        why = next((w for g, w in DIFFERENCES if matches(path, g)), None)
        if why:
            used.add(why)
            print(f"    allowed {path}: upstream {json.dumps(x)}, ours {json.dumps(y)} ({why})")
        else:
            unexplained.append(f"{path}: upstream {json.dumps(x)}, ours {json.dumps(y)}")
    stale = [g for g, w in DIFFERENCES if not any(matches(p, g) for p, _, _ in diffs)]
    same = len(set(flatten(snap["ours"])) - {p for p, _, _ in diffs})
    print(f"    {same} fields the same, {len(diffs) - len(unexplained)} allowed differences, "
          f"{len(messages)} messages worded differently")
    assert not unexplained, "undocumented differences:\n  " + "\n  ".join(unexplained)
    assert not stale, f"listed differences that no longer differ: {stale}"
