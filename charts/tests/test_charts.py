"""Helm chart tests: render and lint both charts (Helm v4 from helm-python-sdk) with the
default values and every override the seed and docs mention, compare the default
rendering with golden files, validate rendered manifests with kubernetes-validate
(--strict, Kubernetes 1.26 and 1.36), and validate custom resources against our CRD
schemas. Run by scripts/test-charts; UPDATE_GOLDEN=1 rewrites the golden files."""

import copy
import glob
import json
import os
import re
import subprocess
import sys
import tempfile
import unittest

import helm_python as helm
import jsonschema
import yaml

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
OPERATOR = os.path.join(ROOT, "charts", "stunner-gateway-operator")
LEGACY = os.path.join(ROOT, "charts", "stunner")
GOLDEN = os.path.join(ROOT, "charts", "tests", "golden")
K8S_VERSIONS = ["1.26.0", "1.36.0"]


def merge(a, b):
    out = copy.deepcopy(a)
    for k, v in b.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = v
    return out


def render(chart, values=None, name="rel", namespace="default"):
    """Rendered templates as a list of objects (NOTES.txt left out), in file order."""
    files = helm.Chart.load(chart).render(values or {}, name=name, namespace=namespace, is_install=True)
    docs = []
    for path in sorted(files):
        if path.endswith("NOTES.txt"):
            continue
        docs.extend(d for d in yaml.safe_load_all(files[path]) if d)
    return docs


def render_text(chart, values=None, name="rel", namespace="default"):
    files = helm.Chart.load(chart).render(values or {}, name=name, namespace=namespace, is_install=True)
    return "".join(f"# Source: {p}\n{files[p]}\n" for p in sorted(files) if not p.endswith("NOTES.txt"))


def crds(chart):
    """The objects under the chart's crds/ folder (what --skip-crds leaves out)."""
    docs = []
    for f in sorted(glob.glob(os.path.join(chart, "crds", "*.yaml"))):
        with open(f) as fh:
            docs.extend(d for d in yaml.safe_load_all(fh) if d)
    return docs


def find(docs, kind, name=None):
    hits = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert hits, f"no {kind} {name or ''} in {[(d['kind'], d['metadata']['name']) for d in docs]}"
    return hits[0]


def container(dep, name=None):
    cs = dep["spec"]["template"]["spec"]["containers"]
    return cs[0] if name is None else next(c for c in cs if c["name"] == name)


def k8s_validate(docs, version):
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as fh:
        yaml.safe_dump_all(docs, fh)
        path = fh.name
    try:
        r = subprocess.run(
            [os.path.join(os.path.dirname(sys.executable), "kubernetes-validate"), "-k", version, "--strict", path],
            capture_output=True,
            text=True,
        )
        return r.returncode, r.stdout + r.stderr
    finally:
        os.unlink(path)


def openapi_to_jsonschema(s):
    """A CRD's openAPIV3Schema as JSON Schema: `nullable` becomes a null type, Kubernetes
    extensions are interpreted where they change validation."""
    if not isinstance(s, dict):
        return s
    out = {}
    for k, v in s.items():
        if k in ("properties", "patternProperties"):
            out[k] = {pk: openapi_to_jsonschema(pv) for pk, pv in v.items()}
        elif k in ("items", "additionalProperties") and isinstance(v, dict):
            out[k] = openapi_to_jsonschema(v)
        elif k in ("allOf", "anyOf", "oneOf"):
            out[k] = [openapi_to_jsonschema(x) for x in v]
        elif k.startswith("x-kubernetes") or k == "nullable":
            continue
        else:
            out[k] = v
    if s.get("x-kubernetes-int-or-string"):
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if s.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    return out


def validate_custom_resource(obj, crd_docs):
    group, version = obj["apiVersion"].split("/")
    for crd in crd_docs:
        if crd["spec"]["group"] == group and crd["spec"]["names"]["kind"] == obj["kind"]:
            for v in crd["spec"]["versions"]:
                if v["name"] == version:
                    schema = openapi_to_jsonschema(v["schema"]["openAPIV3Schema"])
                    body = {k: obj[k] for k in obj if k not in ("apiVersion", "kind", "metadata")}
                    jsonschema.validate(body, schema)
                    return
    raise AssertionError(f"no CRD for {obj['apiVersion']}/{obj['kind']}")


class OperatorChart(unittest.TestCase):
    NS = "stunner-system"

    def r(self, *pairs):
        values = {}
        for p in pairs:
            values = merge(values, helm.parse_set_string(p))
        return render(OPERATOR, values, name="stunner-gateway-operator", namespace=self.NS)

    def test_lint(self):
        res = helm.lint(OPERATOR, strict=True)
        self.assertEqual(res["errors"], [], res)

    def test_golden_default_values(self):
        got = render_text(OPERATOR, {}, name="stunner-gateway-operator", namespace=self.NS)
        path = os.path.join(GOLDEN, "stunner-gateway-operator-default.yaml")
        if os.environ.get("UPDATE_GOLDEN"):
            with open(path, "w") as fh:
                fh.write(got)
        with open(path) as fh:
            self.assertEqual(fh.read(), got, "UPDATE_GOLDEN=1 scripts/test-charts to accept")

    def test_default_install(self):
        docs = self.r()
        op = find(docs, "Deployment", "stunner-gateway-operator-controller-manager")
        self.assertEqual(op["metadata"]["namespace"], self.NS)
        c = container(op, "manager")
        self.assertIn("--leader-elect", c["args"])
        self.assertIn("--dataplane-mode=managed", c["args"])
        self.assertIn("--zap-encoder=console", c["args"])
        labels = op["spec"]["template"]["metadata"]["labels"]
        self.assertEqual(labels["stunner.l7mp.io/config-discovery-service"], "enabled")
        cds = find(docs, "Service", "stunner-config-discovery")
        self.assertEqual(cds["spec"]["ports"][0]["port"], 13478)
        self.assertEqual(cds["spec"]["selector"], {"control-plane": "stunner-gateway-operator-controller-manager"})
        dp = find(docs, "Dataplane", "default")["spec"]
        self.assertEqual(dp["args"], ["-w", "--udp-thread-num=16", "--log-format=text"])
        self.assertEqual(dp["resources"], {"limits": {"cpu": 2, "memory": "512Mi"}, "requests": {"cpu": "500m", "memory": "128Mi"}})
        self.assertEqual(dp["terminationGracePeriodSeconds"], 3600)
        self.assertFalse(dp["hostNetwork"])
        auth = find(docs, "Deployment", "stunner-auth")
        a = container(auth)
        self.assertEqual(a["args"][0], f"--cds-server-address=stunner-config-discovery.{self.NS}.svc:13478")
        self.assertIn("--log-format=text", a["args"])
        self.assertEqual(find(docs, "Service", "stunner-auth")["spec"]["ports"][0]["port"], 8088)

    def test_legacy_mode_has_no_default_dataplane(self):
        docs = self.r("stunnerGatewayOperator.dataplane.mode=legacy")
        self.assertNotIn("Dataplane", [d["kind"] for d in docs])
        self.assertIn("--dataplane-mode=legacy", container(find(docs, "Deployment", "stunner-gateway-operator-controller-manager"))["args"])

    def test_unknown_mode_fails(self):
        with self.assertRaises(helm.HelmError) as e:
            self.r("stunnerGatewayOperator.dataplane.mode=legacyy")
        self.assertIn("must be managed or legacy", str(e.exception))

    def test_dataplane_overrides(self):
        docs = self.r(
            "stunnerGatewayOperator.dataplane.spec.hostNetwork=true",
            "stunnerGatewayOperator.dataplane.spec.replicas=3",
            "stunnerGatewayOperator.dataplane.spec.terminationGracePeriodSeconds=600",
            "stunnerGatewayOperator.dataplane.spec.resources.limits.cpu=4",
            "stunnerGatewayOperator.dataplane.spec.image.tag=9.9.9",
            "stunnerGatewayOperator.dataplane.spec.enableMetricsEndpoint=true",
            "logging.dataplane.format=json",
        )
        dp = find(docs, "Dataplane", "default")["spec"]
        self.assertTrue(dp["hostNetwork"])
        self.assertEqual(dp["replicas"], 3)
        self.assertEqual(dp["terminationGracePeriodSeconds"], 600)
        self.assertEqual(dp["resources"]["limits"]["cpu"], 4)
        self.assertEqual(dp["image"], "ghcr.io/stunner-rs/stunnerd:9.9.9")
        self.assertTrue(dp["enableMetricsEndpoint"])
        self.assertIn("--log-format=json", dp["args"])

    def test_cds_over_tls(self):
        docs = self.r("stunnerGatewayOperator.cds.tls.secretName=cds-tls", "stunnerGatewayOperator.cds.tls.caKey=ca.crt")
        op = find(docs, "Deployment", "stunner-gateway-operator-controller-manager")
        c = container(op, "manager")
        for a in ["--cds-tls-cert=/etc/stunner-cds-tls/tls.crt", "--cds-tls-key=/etc/stunner-cds-tls/tls.key",
                  "--cds-ca-file=/etc/stunner-cds-tls/ca.crt"]:
            self.assertIn(a, c["args"])
        self.assertEqual(c["volumeMounts"], [{"name": "cds-tls", "mountPath": "/etc/stunner-cds-tls", "readOnly": True}])
        self.assertEqual(op["spec"]["template"]["spec"]["volumes"], [{"name": "cds-tls", "secret": {"secretName": "cds-tls"}}])
        auth = find(docs, "Deployment", "stunner-auth")
        a = container(auth)
        self.assertEqual(a["args"][:2], [f"--cds-server-address=https://stunner-config-discovery.{self.NS}.svc:13478",
                                         "--cds-ca-file=/etc/stunner-cds-ca/ca.crt"])
        # The auth service gets the CA, not the key.
        self.assertEqual(auth["spec"]["template"]["spec"]["volumes"][0]["secret"]["items"], [{"key": "ca.crt", "path": "ca.crt"}])
        # A self-signed certificate is its own CA.
        docs = self.r("stunnerGatewayOperator.cds.tls.secretName=cds-tls")
        self.assertFalse([x for x in container(find(docs, "Deployment", "stunner-gateway-operator-controller-manager"), "manager")["args"] if x.startswith("--cds-ca-file")])
        self.assertEqual(find(docs, "Deployment", "stunner-auth")["spec"]["template"]["spec"]["volumes"][0]["secret"]["items"], [{"key": "tls.crt", "path": "ca.crt"}])
        # Off by default: no TLS flags, no volumes.
        c = container(find(self.r(), "Deployment", "stunner-gateway-operator-controller-manager"), "manager")
        self.assertFalse([x for x in c["args"] if "tls" in x])
        self.assertNotIn("volumeMounts", c)

    def test_monitoring_is_off_by_default_and_renders_when_on(self):
        self.assertFalse([d for d in self.r() if d["kind"] == "PodMonitor" or d["metadata"]["name"] == "stunner-grafana-dashboard"])
        docs = self.r("monitoring.podMonitor.enabled=true", "monitoring.podMonitor.labels.release=kps",
                      "monitoring.grafanaDashboard.enabled=true", "monitoring.grafanaDashboard.namespace=monitoring")
        op_mon = find(docs, "PodMonitor", "stunner-gateway-operator")
        dp_mon = find(docs, "PodMonitor", "stunner-dataplanes")
        for m in (op_mon, dp_mon):
            self.assertEqual(m["apiVersion"], "monitoring.coreos.com/v1")
            self.assertEqual(m["metadata"]["labels"]["release"], "kps")
            self.assertEqual(m["spec"]["podMetricsEndpoints"][0]["path"], "/metrics")
        # The monitors select the pods and name the ports those pods declare.
        op = find(docs, "Deployment", "stunner-gateway-operator-controller-manager")
        labels = op["spec"]["template"]["metadata"]["labels"]
        self.assertTrue(all(labels.get(k) == v for k, v in op_mon["spec"]["selector"]["matchLabels"].items()))
        self.assertIn(op_mon["spec"]["podMetricsEndpoints"][0]["port"], [p["name"] for p in container(op, "manager")["ports"]])
        self.assertEqual(dp_mon["spec"]["namespaceSelector"], {"any": True})
        self.assertEqual(dp_mon["spec"]["selector"]["matchLabels"], {"app": "stunner"})
        rendered = open(os.path.join(ROOT, "crates/stunner-gateway/testdata/render/deployment-dataplane-full/out.yaml")).read()
        self.assertIn(f"name: {dp_mon['spec']['podMetricsEndpoints'][0]['port']}", rendered)
        self.assertIn("app: stunner", rendered)
        cm = find(docs, "ConfigMap", "stunner-grafana-dashboard")
        self.assertEqual(cm["metadata"]["namespace"], "monitoring")
        self.assertEqual(cm["metadata"]["labels"]["grafana_dashboard"], "1")
        dash = json.loads(cm["data"]["stunner-rs.json"])
        self.assertEqual(dash["uid"], "stunner-rs")
        ids = [p["id"] for p in dash["panels"]]
        self.assertEqual(len(ids), len(set(ids)), "panel ids repeat")
        exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
        self.assertTrue(exprs and all("stunner_" in e for e in exprs))
        # Every metric a panel reads is one the docs list (the e2e prometheus case runs
        # every query against a real Prometheus and our real expositions).
        doc = open(os.path.join(ROOT, "docs/MONITORING.md")).read().replace("{operator,renderer,updater}", "")
        for name in set(re.findall(r"stunner_[a-z_]+", " ".join(exprs))):
            base = re.sub(r"_(bucket|sum|count)$", "", name)
            if base.endswith("_loop_last_active_timestamp_seconds"):
                base = "stunner_gateway_operator__loop_last_active_timestamp_seconds"
            self.assertIn(base, doc, f"the dashboard reads {name}, which docs/MONITORING.md does not list")

    def test_auth_service_can_be_disabled(self):
        docs = self.r("stunnerAuthService.enabled=false")
        self.assertFalse([d for d in docs if d["metadata"]["name"] == "stunner-auth"])

    def test_operator_logging_values(self):
        c = container(find(self.r("logging.operator.format=json", "logging.operator.level=debug"), "Deployment", "stunner-gateway-operator-controller-manager"))
        self.assertIn("--zap-encoder=json", c["args"])
        self.assertIn("--zap-log-level=debug", c["args"])
        with self.assertRaises(helm.HelmError):
            self.r("logging.operator.format=xml")

    def test_crds_folder_holds_stunner_and_gateway_api_crds(self):
        names = sorted(d["metadata"]["name"] for d in crds(OPERATOR))
        self.assertEqual(
            names,
            sorted([
                "dataplanes.stunner.l7mp.io", "gatewayconfigs.stunner.l7mp.io", "staticservices.stunner.l7mp.io",
                "udproutes.stunner.l7mp.io", "gatewayclasses.gateway.networking.k8s.io",
                "gateways.gateway.networking.k8s.io", "udproutes.gateway.networking.k8s.io",
            ]),
        )
        # --skip-crds output is the templates alone: no CRD is rendered from templates/.
        self.assertNotIn("CustomResourceDefinition", [d["kind"] for d in self.r()])
        # The chart's CRDs are the generated ones checked in under deploy/crds.
        for f in ("stunner-crds.yaml", "gateway-api-crds.yaml"):
            with open(os.path.join(OPERATOR, "crds", f)) as a, open(os.path.join(ROOT, "deploy", "crds", f)) as b:
                self.assertEqual(a.read(), b.read(), f)

    def test_kubernetes_validate_strict(self):
        for values in ([], ["stunnerGatewayOperator.dataplane.mode=legacy"]):
            docs = [d for d in self.r(*values) if d["kind"] != "Dataplane"] + crds(OPERATOR)
            for v in K8S_VERSIONS:
                rc, out = k8s_validate(docs, v)
                self.assertEqual(rc, 0, f"{values} on {v}: {out}")

    def test_custom_resources_validate_against_our_crds(self):
        schema = crds(OPERATOR)
        for values in ([], ["stunnerGatewayOperator.dataplane.spec.hostNetwork=true", "stunnerGatewayOperator.dataplane.spec.env[0].name=X,stunnerGatewayOperator.dataplane.spec.env[0].value=on"]):
            validate_custom_resource(find(self.r(*values), "Dataplane"), schema)
        examples = []
        for f in sorted(glob.glob(os.path.join(ROOT, "examples", "gateway", "*.yaml"))):
            with open(f) as fh:
                examples.extend(d for d in yaml.safe_load_all(fh) if d)
        self.assertGreaterEqual(len(examples), 6)
        for obj in examples:
            validate_custom_resource(obj, schema)
        bad = {"apiVersion": "stunner.l7mp.io/v1", "kind": "StaticService", "metadata": {"name": "x"}, "spec": {}}
        with self.assertRaises(jsonschema.ValidationError):
            validate_custom_resource(bad, schema)

    def test_dev_channel(self):
        out = tempfile.mkdtemp()
        dev = subprocess.run([os.path.join(ROOT, "scripts", "chart-dev"), out], capture_output=True, text=True, check=True).stdout.strip()
        self.assertEqual(helm.lint(dev, strict=True)["errors"], [])
        docs = render(dev, {}, name="stunner-gateway-operator", namespace=self.NS)
        op = container(find(docs, "Deployment", "stunner-gateway-operator-controller-manager"))
        self.assertTrue(op["image"].endswith(":dev"))
        self.assertEqual(op["imagePullPolicy"], "Always")
        dp = find(docs, "Dataplane", "default")["spec"]
        self.assertTrue(dp["image"].endswith(":dev"))
        self.assertEqual(dp["imagePullPolicy"], "Always")
        self.assertEqual(container(find(docs, "Deployment", "stunner-auth"))["imagePullPolicy"], "Always")


class LegacyChart(unittest.TestCase):
    def r(self, *pairs, name="stunner", namespace="stunner"):
        values = {}
        for p in pairs:
            values = merge(values, helm.parse_set_string(p))
        return render(LEGACY, values, name=name, namespace=namespace)

    def test_lint(self):
        self.assertEqual(helm.lint(LEGACY, strict=True)["errors"], [])

    def test_golden_default_values(self):
        got = render_text(LEGACY, {}, name="stunner", namespace="stunner")
        path = os.path.join(GOLDEN, "stunner-default.yaml")
        if os.environ.get("UPDATE_GOLDEN"):
            with open(path, "w") as fh:
                fh.write(got)
        with open(path) as fh:
            self.assertEqual(fh.read(), got, "UPDATE_GOLDEN=1 scripts/test-charts to accept")

    def test_default_dataplane_reads_the_operator_config_map(self):
        docs = self.r()
        dep = find(docs, "Deployment", "stunner")
        c = container(dep, "stunnerd")
        self.assertEqual(c["args"], ["-w", "-c", "/etc/stunnerd/stunnerd.conf", "--udp-thread-num=16", "--log-format=text"])
        self.assertEqual(c["env"][0]["valueFrom"]["fieldRef"]["fieldPath"], "status.podIP")
        spec = dep["spec"]["template"]["spec"]
        self.assertEqual(spec["volumes"][0]["configMap"], {"name": "stunnerd-config", "optional": True})
        self.assertEqual(spec["terminationGracePeriodSeconds"], 3600)
        self.assertEqual(len(spec["containers"]), 1, "no sidecar")
        self.assertEqual(dep["spec"]["template"]["metadata"]["labels"]["app"], "stunner")
        self.assertEqual(c["resources"]["requests"], {"cpu": "500m", "memory": "128Mi"})

    def test_udp_multithreading_values(self):
        c = container(find(self.r("stunner.deployment.container.stunnerd.udpMultithreading.enabled=false"), "Deployment"))
        self.assertFalse([a for a in c["args"] if a.startswith("--udp-thread-num")])
        c = container(find(self.r("stunner.deployment.container.stunnerd.udpMultithreading.readLoopsPerUDPListener=4"), "Deployment"))
        self.assertIn("--udp-thread-num=4", c["args"])

    def test_grace_period_from_either_key(self):
        seed = find(self.r("stunner.deployment.container.terminationGracePeriodSeconds=120"), "Deployment")
        self.assertEqual(seed["spec"]["template"]["spec"]["terminationGracePeriodSeconds"], 120)
        upstream = find(self.r("stunner.deployment.container.stunnerd.terminationGracePeriodSeconds=240"), "Deployment")
        self.assertEqual(upstream["spec"]["template"]["spec"]["terminationGracePeriodSeconds"], 240)
        both = find(self.r("stunner.deployment.container.terminationGracePeriodSeconds=120", "stunner.deployment.container.stunnerd.terminationGracePeriodSeconds=240"), "Deployment")
        self.assertEqual(both["spec"]["template"]["spec"]["terminationGracePeriodSeconds"], 120)

    def test_host_network_and_resources(self):
        dep = find(self.r("stunner.deployment.hostNetwork=true", "stunner.deployment.container.stunnerd.resources.limits.memory=1Gi"), "Deployment")
        self.assertTrue(dep["spec"]["template"]["spec"]["hostNetwork"])
        self.assertEqual(container(dep)["resources"]["limits"]["memory"], "1Gi")

    def test_two_releases_in_two_namespaces_do_not_collide(self):
        seen = set()
        for rel, ns in (("stunner-prod", "stunner-prod"), ("stunner-dev", "stunner-dev")):
            for d in self.r(name=rel, namespace=ns):
                key = (d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"])
                self.assertIsNotNone(key[1], f"cluster-scoped object {key} would collide")
                self.assertNotIn(key, seen)
                seen.add(key)
        # The seed's plain install works too.
        self.assertTrue(self.r(name="stunner", namespace="stunner"))

    def test_kubernetes_validate_strict(self):
        for values in ([], ["stunner.deployment.hostNetwork=true", "stunner.deployment.container.stunnerd.udpMultithreading.enabled=false"]):
            for v in K8S_VERSIONS:
                rc, out = k8s_validate(self.r(*values), v)
                self.assertEqual(rc, 0, f"{values} on {v}: {out}")


class Dockerfiles(unittest.TestCase):
    """The images build the binaries the charts run, and run them as non-root."""

    def test_dockerfiles_name_real_packages_and_binaries(self):
        meta = subprocess.run(
            ["cargo", "metadata", "--no-deps", "--format-version", "1", "--offline"],
            cwd=ROOT, capture_output=True, text=True, check=True,
        )
        import json

        bins = {(p["name"], t["name"]) for p in json.loads(meta.stdout)["packages"] for t in p["targets"] if "bin" in t["kind"]}
        files = sorted(glob.glob(os.path.join(ROOT, "deploy", "docker", "*.Dockerfile")))
        self.assertEqual(
            [os.path.basename(f) for f in files],
            ["stunner-auth-service.Dockerfile", "stunner-gateway-operator.Dockerfile", "stunnerd.Dockerfile", "turncat.Dockerfile"],
        )
        for f in files:
            with open(f) as fh:
                text = fh.read()
            name = os.path.basename(f).removesuffix(".Dockerfile")
            self.assertIn((name, name), bins, f)
            self.assertIn(f"-p {name} ", text)
            self.assertIn(f'ENTRYPOINT ["/usr/local/bin/{name}"]', text)
            self.assertIn("USER 65532:65532", text)
            self.assertEqual(text.count("FROM "), 2, "multi-stage")
        # The commands the charts run exist in the images.
        commands = set()
        for chart in (OPERATOR, LEGACY):
            for d in render(chart, {}, name="x", namespace="x") + [find(render(OPERATOR, {}, name="x", namespace="x"), "Dataplane")]:
                spec = d.get("spec", {})
                if d["kind"] == "Dataplane":
                    commands.update(spec["command"])
                for c in spec.get("template", {}).get("spec", {}).get("containers", []):
                    commands.update(c.get("command", []))
        self.assertEqual(commands, {"stunnerd", "stunner-gateway-operator", "stunner-auth-service"})


def install_doc_commands():
    """Shell lines of the code blocks in docs/INSTALL.md, in order."""
    lines, inside = [], False
    with open(os.path.join(ROOT, "docs", "INSTALL.md")) as fh:
        for line in fh:
            if line.startswith("```"):
                inside = not inside
                continue
            if inside and line.strip():
                lines.append(line.strip())
    return lines


def operator_bin():
    path = os.path.join(ROOT, "target", "debug", "stunner-gateway-operator")
    if not os.path.exists(path):
        subprocess.run(["cargo", "build", "-q", "-p", "stunner-gateway-operator"], cwd=ROOT, check=True)
    return path


class InstallDoc(unittest.TestCase):
    """Every command of docs/INSTALL.md that runs without a cluster, run: `helm install`
    as the equivalent render (same chart, release, namespace, --set values, --skip-crds),
    the scripts and the operator commands for real; `kubectl apply -f` files must exist
    and hold CRDs."""

    def test_install_doc_commands(self):
        import shlex
        import json
        import time
        import urllib.request

        ran = 0
        for line in install_doc_commands():
            argv = shlex.split(line)
            with self.subTest(line=line):
                if argv[:2] == ["helm", "install"]:
                    name, chart = argv[2], os.path.join(ROOT, argv[3])
                    ns, values, i = "default", {}, 4
                    while i < len(argv):
                        a = argv[i]
                        if a.startswith("--namespace="):
                            ns = a.split("=", 1)[1]
                        elif a == "--set":
                            i += 1
                            values = merge(values, helm.parse_set_string(argv[i]))
                        else:
                            self.assertIn(a, ("--create-namespace", "--skip-crds"), line)
                        i += 1
                    docs = render(chart, values, name=name, namespace=ns)
                    self.assertTrue(docs)
                    self.assertNotIn("CustomResourceDefinition", [d["kind"] for d in docs])
                    self.assertEqual(helm.lint(chart, values, strict=True)["errors"], [])
                elif argv[0] == "scripts/chart-dev":
                    subprocess.run([os.path.join(ROOT, argv[0])] + argv[1:], cwd=ROOT, check=True, capture_output=True)
                elif argv[:3] == ["kubectl", "apply", "-f"]:
                    with open(os.path.join(ROOT, argv[3])) as fh:
                        kinds = {d["kind"] for d in yaml.safe_load_all(fh) if d}
                    self.assertEqual(kinds, {"CustomResourceDefinition"})
                    ran -= 1  # needs a cluster; only the file is checked
                elif argv[:4] == ["cargo", "run", "-p", "stunner-gateway-operator"]:
                    args = argv[5:]
                    if ">" in args:
                        target = args[args.index(">") + 1]
                        out = subprocess.run([operator_bin()] + args[: args.index(">")], cwd=ROOT, capture_output=True, text=True, check=True).stdout
                        with open(os.path.join(ROOT, target)) as fh:
                            self.assertEqual(fh.read(), out, f"{target} is stale")
                    elif args[0] == "render":
                        out = subprocess.run([operator_bin()] + args, cwd=ROOT, capture_output=True, text=True, check=True).stdout
                        self.assertTrue(yaml.safe_load(out)["configs"])
                    elif args[0] == "standalone":
                        p = subprocess.Popen([operator_bin()] + args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                        addr = args[args.index("--config-discovery-address") + 1]
                        try:
                            body = None
                            for _ in range(100):
                                try:
                                    body = urllib.request.urlopen(f"http://{addr}/api/v1/configs", timeout=1).read()
                                    break
                                except OSError:
                                    time.sleep(0.1)
                            self.assertIsNotNone(body, "standalone CDS did not answer")
                            self.assertEqual(json.loads(body)["items"][0]["admin"]["name"], "stunner/udp-gateway")
                        finally:
                            p.kill()
                            p.wait()
                    else:
                        self.fail(f"unhandled: {line}")
                elif argv[:2] == ["docker", "build"]:
                    # Needs the base images from a registry this machine cannot reach;
                    # the Dockerfiles are checked by the Dockerfiles tests.
                    self.assertTrue(os.path.exists(os.path.join(ROOT, argv[3])))
                    ran -= 1
                else:
                    self.fail(f"unhandled command in docs/INSTALL.md: {line}")
                ran += 1
        self.assertGreaterEqual(ran, 12)


if __name__ == "__main__":
    result = unittest.main(exit=False, verbosity=1).result
    failed = len(result.failures) + len(result.errors)
    print(f"test result: {'ok' if failed == 0 else 'FAILED'}. {result.testsRun - failed} passed; {failed} failed")
    sys.exit(1 if failed else 0)
