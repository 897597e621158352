"""The operator under faults on the real control plane: a write refused by RBAC until the
role allows it, a server-side-apply conflict with another field manager, a Lease holder
frozen past its lease, and (with a real dataplane) kube-apiserver and etcd restarted.

The host cases run the operator binary on the host (tests/k8s/operator_host.py); the
restarts stop the real processes through `scripts/k8s-env restart`.
"""

import json
import os
import re
import signal
import threading
import time

from kube import *  # noqa: F403 - the shared helpers
import operator_host as H


def metric(op, series):
    """The value of one series (name with labels, as exposed) on a host operator, or 0."""
    text = http_get(op.metrics, "/metrics")[1]
    m = re.search(r"^" + re.escape(series) + r" (\S+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


def writes(op):
    """Every successful write a host operator made."""
    text = http_get(op.metrics, "/metrics")[1]
    return sum(float(v) for v in re.findall(r"^stunner_gateway_operator_resource_operations_total\{[^}]*\} (\S+)$", text, re.M))


def service():
    out = kubectl("get", "service", "-n", H.NS, "udp-gateway", "--ignore-not-found", "-o", "json")
    return json.loads(out) if out.strip() else None


def case_operator_rbac_retry():
    """A ServiceAccount that may not write Deployments: the Service is written, the
    Deployment is refused by real RBAC and retried with backoff; once the role allows it,
    the retry writes it with no other change in the cluster."""
    H.setup()
    sa = "op-no-deployments"
    kubectl("create", "serviceaccount", sa, "-n", H.NS, check=False)

    def role(deployments_verbs):
        apply(json.dumps({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": sa},
                          "rules": [{"apiGroups": ["", "coordination.k8s.io", "discovery.k8s.io", "gateway.networking.k8s.io",
                                                   "stunner.l7mp.io"], "resources": ["*"], "verbs": ["*"]},
                                    {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": deployments_verbs}]}))

    role(["get", "list", "watch"])
    kubectl("create", "clusterrolebinding", sa, f"--clusterrole={sa}", f"--serviceaccount={H.NS}:{sa}", check=False)
    C.cluster_objects += [("clusterrolebinding", sa), ("clusterrole", sa)]
    token = kubectl("create", "token", sa, "-n", H.NS, "--duration", "1h").strip()
    with open(os.environ["KUBECONFIG"]) as f:
        kc = re.sub(r"token: .*", f"token: {token}", f.read())
    path = os.path.join(ENV_DIR, "kubeconfig-no-deployments")
    with open(path, "w") as f:
        f.write(kc)
    assert kubectl("--kubeconfig", path, "auth", "can-i", "patch", "deployments.apps", "-n", H.NS, check=False).strip() == "no"

    def body(op):
        until("the Service (allowed)", service, timeout=30)
        failed = 'stunner_gateway_operator_resource_operation_failures_total{kind="Deployment",operation="apply"}'
        until("refused Deployment writes, retried", lambda: metric(op, failed) >= 2, timeout=30)
        assert H.deployment() is None
        assert metric(op, "stunner_gateway_operator_unwritten_objects") >= 1
        # Retries, not renders: the failures go on with nothing changing in the cluster.
        renders, f1 = metric(op, "stunner_gateway_operator_render_total"), metric(op, failed)
        until("another retry", lambda: metric(op, failed) > f1, timeout=40)
        assert metric(op, "stunner_gateway_operator_render_total") == renders, "a render, not a retry, wrote again"
        role(["*"])
        t0 = time.time()
        until("the retry to write the Deployment", H.deployment, timeout=45)
        print(f"    refused {metric(op, failed):.0f}x, written {time.time() - t0:.1f}s after the role allowed it")
        until("nothing left unwritten", lambda: metric(op, "stunner_gateway_operator_unwritten_objects") == 0, timeout=30)
        assert "write failed" in open(op.log_path).read()

    H.with_operator(H.Operator("rbac-retry", kubeconfig=path, metrics=True), body)


def case_operator_ssa_conflict():
    """Another field manager changes a field we render on the Service: the operator's
    unforced apply is refused with a conflict, which it reports once and does not fight."""
    H.setup()

    def body(op):
        until("the Service", service, timeout=30)
        assert service()["spec"].get("sessionAffinity") == "ClientIP"
        kubectl("patch", "service", "-n", H.NS, "udp-gateway", "--type", "merge", "--field-manager", "e2e-user",
                "-p", '{"spec": {"sessionAffinity": "None"}}')
        series = 'stunner_gateway_operator_resource_operation_conflicts_total{kind="Service"}'
        until("the conflict to be counted", lambda: metric(op, series) >= 1, timeout=30)
        rv = service()["metadata"]["resourceVersion"]
        # A World change renders again: the conflict is met again, and still not forced.
        H.put_endpoints(["10.244.1.1", "10.244.1.3"])
        until("the new endpoint on the CDS", lambda: "10.244.1.3" in op.endpoints(), timeout=30)
        time.sleep(2)
        svc = service()
        assert svc["spec"].get("sessionAffinity") == "None", "the operator fought over the field"
        assert svc["metadata"]["resourceVersion"] == rv, "the Service was written again"
        log = open(op.log_path).read()
        assert log.count("another field manager owns fields") == 1, log[-1500:]
        assert "e2e-user" in log, "the conflicting manager is not named"
        print(f"    conflict with e2e-user reported once, counted {metric(op, series):.0f}x, not forced")

    H.with_operator(H.Operator("ssa-conflict", metrics=True), body)


def case_operator_frozen_leader():
    """Two replicas with --leader-elect; the holder is frozen (SIGSTOP) past the lease: the
    other takes over and writes; resumed, the frozen one writes nothing."""
    H.setup()
    env = lambda name: {"POD_NAME": name, "POD_NAMESPACE": SYSTEM_NS}  # noqa: E731
    a = H.Operator("frozen-a", "--leader-elect", metrics=True, env=env("replica-a"))
    b = None
    try:
        until("replica-a to lead and write", H.deployment, timeout=30)
        b = H.Operator("frozen-b", "--leader-elect", metrics=True, env=env("replica-b"))
        until("replica-b to serve the config", lambda: b.config()["admin"]["name"] == f"{H.NS}/udp-gateway", timeout=30)
        assert kget("lease", "-n", SYSTEM_NS, H.LEASE)["spec"]["holderIdentity"] == "replica-a"
        a.p.send_signal(signal.SIGSTOP)
        t0 = time.time()
        until("replica-b to take the Lease", lambda: kget("lease", "-n", SYSTEM_NS, H.LEASE)["spec"]["holderIdentity"] == "replica-b",
              timeout=40)
        took = time.time() - t0
        kubectl("annotate", "gateway", "-n", H.NS, "udp-gateway", "stunner.l7mp.io/disable-session-affinity=true")
        until("replica-b to write the change", lambda: service()["spec"].get("sessionAffinity") == "None", timeout=30)
        time.sleep(3)  # the frozen holder stays frozen past its renew deadline and the lease
        a.p.send_signal(signal.SIGCONT)
        time.sleep(0.5)
        before = writes(a)
        kubectl("annotate", "gateway", "-n", H.NS, "udp-gateway", "stunner.l7mp.io/disable-session-affinity-")
        until("replica-b to write the change back", lambda: service()["spec"].get("sessionAffinity") == "ClientIP", timeout=30)
        time.sleep(4)
        assert writes(a) == before, f"the resumed replica wrote ({before} -> {writes(a)})"
        assert kget("lease", "-n", SYSTEM_NS, H.LEASE)["spec"]["holderIdentity"] == "replica-b"
        print(f"    Lease passed to replica-b {took:.1f}s after replica-a froze; resumed, replica-a wrote nothing")
    except Exception:
        for op in (a, b):
            if op:
                print(f"--- {op.log_path} (tail)\n{op.tail()}")
        raise
    finally:
        for op in (a, b):
            if op:
                if op.p.poll() is None:
                    op.p.send_signal(signal.SIGCONT)
                op.stop()


def restart(component, pause):
    sh("scripts/k8s-env", "restart", ENV_DIR, component, str(pause), timeout=pause + 60)


def api_ready():
    return kubectl("get", "--raw", "/readyz", check=False, timeout=5).strip() == "ok"


def pod_metrics(ip):
    import urllib.request
    with urllib.request.urlopen(f"http://{ip}:8080/metrics", timeout=2) as r:
        return r.read().decode()


def series_sum(text, name):
    return sum(float(v) for v in re.findall(r"^" + re.escape(name) + r"(?:\{[^}]*\})? (\S+)$", text, re.M))


def case_control_plane_restarts():
    """A Gateway with a real dataplane and the chart's operator: kube-apiserver is stopped for
    20 s, then etcd restarted. The dataplane relays throughout from its last config; the
    operator relists after the API server's restart (and after etcd's when the API server
    breaks its watches), writes nothing it had written (no duplicate writes), and a change
    made afterwards is written (none lost); the dataplane pod is the same one throughout."""
    C.reset()  # the host cases' class and namespaces
    for n in (SYSTEM_NS, H.NS):
        until(f"namespace {n} to be gone", lambda: not kubectl("get", "namespace", n, "--ignore-not-found", "-o", "name").strip(),
              timeout=120)
    install_operator()
    ns = "e2e-faults"
    managed_gateway(ns, "e2e-faults")
    peer = echo_ip(ns)
    port = node_port(ns, "udp-gateway", "UDP")
    assert_relays(port, peer)
    pod = live_pods(ns)[0]["metadata"]["uid"]
    op_ip = operator_pod()["status"]["podIP"]
    events = 'stunner_gateway_operator_reconcile_events_total{result="passed"}'
    ops = "stunner_gateway_operator_resource_operations_total"

    def settled():
        """The operator's write count once it has been still for 3 s."""
        w = series_sum(pod_metrics(op_ip), ops)
        time.sleep(3)
        return w if series_sum(pod_metrics(op_ip), ops) == w else None

    for component, pause, affinity in (("kube-apiserver", 20, "None"), ("etcd", 3, "ClientIP")):
        before = until("the operator's writes to settle", settled, timeout=60, period=0.5)
        seen = series_sum(pod_metrics(op_ip), events)
        t = threading.Thread(target=restart, args=(component, pause))
        t.start()
        if component == "kube-apiserver":
            until("the API server to be down", lambda: not api_ready(), timeout=20, period=0.5)
            assert_relays(port, peer)
            print("    relayed while kube-apiserver was down")
        t.join()
        until(f"the API server back after the {component} restart", api_ready, timeout=60)
        if component == "kube-apiserver":
            # Its watches died with it: the operator must relist.
            until("the operator to relist", lambda: series_sum(pod_metrics(op_ip), events) > seen, timeout=60)
            relisted = "relisted"
        else:
            # An etcd restart breaks the operator's watches only when the API server's
            # watch cache cannot resume (CI saw both); give a relist time to happen.
            end = time.time() + 15
            while time.time() < end and series_sum(pod_metrics(op_ip), events) <= seen:
                time.sleep(0.5)
            relisted = "relisted" if series_sum(pod_metrics(op_ip), events) > seen else "watches resumed"
        time.sleep(3)
        after = series_sum(pod_metrics(op_ip), ops)
        assert after == before, f"after the {component} restart the operator wrote {after - before:.0f} objects again"
        value = "true" if affinity == "None" else None
        kubectl("annotate", "gateway", "-n", ns, "udp-gateway",
                f"stunner.l7mp.io/disable-session-affinity={value}" if value else "stunner.l7mp.io/disable-session-affinity-")
        until(f"the operator to write a change made after the {component} restart",
              lambda: kget("service", "-n", ns, "udp-gateway")["spec"].get("sessionAffinity") == affinity, timeout=60)
        print(f"    {component} restarted: {relisted}, nothing rewritten, the next change written")
    assert [p["metadata"]["uid"] for p in live_pods(ns)] == [pod], "the dataplane pod was restarted"
    assert_relays(port, peer)


CASES = [case_operator_rbac_retry, case_operator_ssa_conflict, case_operator_frozen_leader]
