"""Helpers shared by the end-to-end cases (tests/k8s/e2e.py and the modules it loads):
kubectl and Helm wrappers, polling, the test's Gateway manifests, TURN relaying from the
outside client's namespace, and the cleanup between cases."""

import json
import os
import re
import socket
import subprocess
import time
import urllib.request

ENV_DIR = os.environ["K8S_ENV_DIR"]
EXEC = os.path.join(ENV_DIR, "exec")
NODE_EXTERNAL_IP = "10.245.0.1"
OP_CHART = "charts/stunner-gateway-operator"
SYSTEM_NS = "stunner-system"
OP_DEPLOY = "stunner-gateway-operator-controller-manager"


class Skip(Exception):
    """A case that cannot run here, with the reason; counted apart from passes."""


def sh(*args, check=True, timeout=180, input=None):
    """Runs a command; returns stdout. Raises with stderr on failure."""
    p = subprocess.run(args, capture_output=True, text=True, timeout=timeout, input=input)
    if check and p.returncode != 0:
        raise AssertionError(f"{' '.join(args)} exited {p.returncode}: {p.stderr.strip()[-2000:]}")
    return p.stdout


def kubectl(*args, **kw):
    return sh("kubectl", *args, **kw)


def kget(*args):
    return json.loads(kubectl("get", "-o", "json", *args))


def until(what, fn, timeout=90, period=1.0):
    """Polls fn until it returns a true value; fails with `what` after timeout."""
    end = time.time() + timeout
    last = None
    while time.time() < end:
        try:
            v = fn()
            if v:
                return v
            last = f"got {v!r}"
        except Exception as e:  # noqa: BLE001 - retried until the deadline
            last = e
        time.sleep(period)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}" + (f" (last: {last})" if last else ""))


def helm_install(release, chart, ns, *extra):
    sh("helm", "install", release, chart, "--create-namespace", f"--namespace={ns}", "--wait", "--timeout", "150s", *extra, timeout=200)


def helm_uninstall(release, ns):
    sh("helm", "uninstall", release, "-n", ns, "--wait", "--timeout", "120s", check=False, timeout=150)


def pods(ns, selector):
    return kget("pods", "-n", ns, "-l", selector)["items"]


def live_pods(ns, selector="app=stunner"):
    """Pods not being deleted (a draining stunnerd stays Terminating while its
    allocations live: turnutils_uclient leaves one behind, for up to its 600 s lifetime)."""
    return [p for p in pods(ns, selector) if not p["metadata"].get("deletionTimestamp")]


def ready_endpoints(ns, svc):
    """The addresses the EndpointSlices of `ns/svc` list as ready."""
    slices = kget("endpointslices", "-n", ns, "-l", f"kubernetes.io/service-name={svc}")["items"]
    return sorted(a for s in slices for e in s.get("endpoints") or []
                  if (e.get("conditions") or {}).get("ready", True) for a in e.get("addresses", []))


def until_routed_to(ns, svc, ip, timeout=60):
    """Waits until `ns/svc` routes to `ip` alone. A pod being Ready does not mean the
    Service sends to it yet: the EndpointSlice controller and the service proxy follow, and
    until then a new flow goes to a draining pod (which takes no new allocations)."""
    until(f"{ns}/{svc} to route to {ip} alone", lambda: ready_endpoints(ns, svc) == [ip], timeout=timeout)
    # The node's service proxy follows the slice through a watch.
    time.sleep(1)


def rollout_settled(ns, name):
    """The Deployment's controller saw its latest spec, every replica runs it and is
    ready, and exactly that many pods are not being deleted."""
    d = kget("deployment", "-n", ns, name)
    st, want = d.get("status", {}), d["spec"].get("replicas", 1)
    return (st.get("observedGeneration") == d["metadata"]["generation"] and st.get("updatedReplicas") == want
            and st.get("readyReplicas") == want and len(live_pods(ns)) == want)


def ready(pod):
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod.get("status", {}).get("conditions", []))


def gateway_manifests(ns, cls, mixed=True):
    """GatewayClass + GatewayConfig + Gateway (UDP and TCP listeners) + UDPRoute to a UDP
    echo Deployment and Service in `ns`."""
    ann = '\n  annotations:\n    stunner.l7mp.io/enable-mixed-protocol-lb: "true"' if mixed else ""
    return f"""
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata:
  name: {cls}
spec:
  controllerName: "stunner.l7mp.io/gateway-operator"
  parametersRef:
    group: "stunner.l7mp.io"
    kind: GatewayConfig
    name: {cls}-config
    namespace: {ns}
---
apiVersion: stunner.l7mp.io/v1
kind: GatewayConfig
metadata:
  name: {cls}-config
  namespace: {ns}
spec:
  realm: stunner.l7mp.io
  authType: static
  userName: "user-1"
  password: "pass-1"
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: udp-gateway
  namespace: {ns}{ann}
spec:
  gatewayClassName: {cls}
  listeners:
    - name: udp-listener
      port: 3478
      protocol: TURN-UDP
    - name: tcp-listener
      port: 3479
      protocol: TURN-TCP
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: udp-echo
  namespace: {ns}
spec:
  selector:
    matchLabels: {{app: udp-echo}}
  template:
    metadata:
      labels: {{app: udp-echo}}
    spec:
      containers:
        - name: echo
          image: local/udp-echo:1
          args: ["-p", "9001", "-L", "$(POD_IP)"]
          env:
            - name: POD_IP
              valueFrom: {{fieldRef: {{fieldPath: status.podIP}}}}
---
apiVersion: v1
kind: Service
metadata:
  name: udp-echo
  namespace: {ns}
spec:
  selector: {{app: udp-echo}}
  ports:
    - name: echo
      port: 9001
      protocol: UDP
---
apiVersion: stunner.l7mp.io/v1
kind: UDPRoute
metadata:
  name: udp-echo
  namespace: {ns}
spec:
  parentRefs:
    - name: udp-gateway
  rules:
    - backendRefs:
        - name: udp-echo
"""


def apply(text):
    kubectl("apply", "-f", "-", input=text)


def ensure_ns(ns):
    kubectl("create", "namespace", ns, check=False)


def echo_ip(ns):
    return until(f"the echo pod in {ns}", lambda: next(
        (p["status"]["podIP"] for p in pods(ns, "app=udp-echo") if ready(p) and p["status"].get("podIP")), None))


def node_port(ns, svc, protocol):
    def find():
        s = kget("service", "-n", ns, svc)
        return next((p["nodePort"] for p in s["spec"]["ports"] if p["protocol"] == protocol and p.get("nodePort")), None)
    return until(f"a {protocol} NodePort on {ns}/{svc}", find)


def relay(port, peer_ip, tcp=False, n=50):
    """turnutils_uclient from outside the cluster through NODE_EXTERNAL_IP:port to the
    echo peer; returns (lost, sent, received)."""
    args = [EXEC, "turnutils_uclient", "-p", str(port), "-e", peer_ip, "-r", "9001", "-n", str(n),
            "-m", "2", "-l", "120", "-u", "user-1", "-w", "pass-1"]
    if tcp:
        args.append("-t")
    out = sh(*args, NODE_EXTERNAL_IP, check=False, timeout=90)
    # The totals are the last of the progress lines.
    lost = re.findall(r"Total lost packets (\d+)", out)
    sent = re.findall(r"tot_send_msgs=(\d+)", out)
    recv = re.findall(r"tot_recv_msgs=(\d+)", out)
    if not (sent and recv):
        raise AssertionError(f"turnutils_uclient printed no totals:\n{out[-1500:]}")
    return int(lost[-1]) if lost else int(sent[-1]) - int(recv[-1]), int(sent[-1]), int(recv[-1]), out


def assert_relays(port, peer, tcp=False):
    lost, sent, recv, out = relay(port, peer, tcp=tcp)
    assert sent > 0 and lost == 0 and recv == sent, (f"relay over {'TCP' if tcp else 'UDP'} :{port}: sent {sent}, received {recv}, "
                                                     f"lost {lost}\n--- turnutils_uclient:\n{out[-1500:]}")
    print(f"    relayed over {'TCP' if tcp else 'UDP'} {NODE_EXTERNAL_IP}:{port} -> {peer}:9001: {sent} sent, {recv} received, 0 lost")


def assert_relays_from(ns, pod, port, peer, tcp=False):
    """assert_relays, with the log of the dataplane pod that should have relayed appended
    to a failure."""
    try:
        assert_relays(port, peer, tcp=tcp)
    except AssertionError as e:
        logs = kubectl("logs", "-n", ns, pod["metadata"]["name"], "--tail=60", check=False)
        raise AssertionError(f"{e}\n--- {pod['metadata']['name']} log:\n{logs}") from None


def gateway_ready(ns, name="udp-gateway"):
    def ok():
        d = kget("deployment", "-n", ns, name)
        return d.get("status", {}).get("readyReplicas", 0) >= 1
    until(f"the dataplane Deployment {ns}/{name} to be ready", ok, timeout=120)


def operator_pod():
    return until("an operator pod", lambda: next(iter(pods(SYSTEM_NS, f"control-plane={OP_DEPLOY}")), None))


class Cluster:
    """Cleanup shared by the cases: every release and namespace a case made goes."""

    def __init__(self):
        self.releases = []
        self.namespaces = []
        self.classes = []
        self.cluster_objects = []  # (kind, name) of cluster-scoped objects a case made

    def reset(self):
        for cls in self.classes:
            kubectl("delete", "gatewayclass", cls, "--ignore-not-found", "--wait=false", check=False)
        for rel, ns in reversed(self.releases):
            helm_uninstall(rel, ns)
        for ns in self.namespaces:
            kubectl("delete", "namespace", ns, "--ignore-not-found", "--wait=false", check=False)
        for kind, name in self.cluster_objects:
            kubectl("delete", kind, name, "--ignore-not-found", "--wait=false", check=False)
        self.releases, self.namespaces, self.classes, self.cluster_objects = [], [], [], []


C = Cluster()


def install_operator(*extra, chart=OP_CHART):
    helm_install("stunner-gateway-operator", chart, SYSTEM_NS, *extra)
    C.releases.append(("stunner-gateway-operator", SYSTEM_NS))


def managed_gateway(ns, cls):
    ensure_ns(ns)
    C.namespaces.append(ns)
    C.classes.append(cls)
    apply(gateway_manifests(ns, cls))
    gateway_ready(ns)


# --- the cases, in the order of the install guide ---------------------------------------

def free_port():
    with socket.socket() as so:
        so.bind(("127.0.0.1", 0))
        return so.getsockname()[1]


def http_get(port, path):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
        return r.status, r.read().decode()
