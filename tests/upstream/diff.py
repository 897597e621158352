#!/usr/bin/env python3
"""Differential tests against the upstream Go STUNner (built by scripts/upstream): the same
configs and clients through both dataplanes. Run through scripts/test-upstream.

Environment: UPSTREAM_BIN (the upstream binaries), OURS_BIN (ours, a cargo target dir).
Everything listens on and sends to 127.0.0.1 only.
Ends with the line `upstream-diff: N passed, M failed`.
"""

import base64
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.request

UP = os.environ["UPSTREAM_BIN"]
OURS = os.environ["OURS_BIN"]
WORK = tempfile.mkdtemp(prefix="upstream-diff-")
TRANSPORTS = ["udp", "tcp", "tls", "dtls"]


def free_port(kind=socket.SOCK_STREAM):
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_both():
    """A port free for TCP and UDP alike (listeners of both kinds may share a number)."""
    for _ in range(50):
        p = free_port()
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                u.bind(("127.0.0.1", p))
            return p
        except OSError:
            continue
    raise RuntimeError("no free port")


def clean_env():
    """This environment without what would point a STUNner tool elsewhere (Kubernetes,
    STUNNER_*, CDS_*): each case sets what it needs."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("KUBERNETES_", "STUNNER_", "CDS_"))}


def until(what, fn, timeout=20, period=0.2):
    end = time.time() + timeout
    last = None
    while time.time() < end:
        try:
            v = fn()
            if v:
                return v
            last = v
        except Exception as e:  # noqa: BLE001 - retried until the deadline
            last = e
        time.sleep(period)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


def http_get(port, path):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


class Echo:
    """A UDP echo peer on 127.0.0.1."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.sock.settimeout(0.5)
        self.stop = False
        threading.Thread(target=self.run, daemon=True).start()

    def run(self):
        while not self.stop:
            try:
                data, addr = self.sock.recvfrom(65535)
                self.sock.sendto(data, addr)
            except socket.timeout:
                continue
            except OSError:
                return


def tls_pair():
    """A self-signed certificate for 127.0.0.1, as (cert PEM, key PEM)."""
    d = os.path.join(WORK, "tls")
    if not os.path.exists(os.path.join(d, "cert.pem")):
        os.makedirs(d, exist_ok=True)
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                        "-nodes", "-days", "30", "-subj", "/CN=localhost",
                        "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
                        "-keyout", os.path.join(d, "key.pem"), "-out", os.path.join(d, "cert.pem")],
                       check=True, capture_output=True)
    return (open(os.path.join(d, "cert.pem"), "rb").read(), open(os.path.join(d, "key.pem"), "rb").read())


def relay_config(name, ports, health, cluster="127.0.0.1/32"):
    cert, key = tls_pair()
    b64 = lambda b: base64.b64encode(b).decode()
    listeners = []
    for t in TRANSPORTS:
        lis = {"name": f"{t}-listener", "protocol": f"TURN-{t.upper()}", "address": "127.0.0.1",
               "port": ports[t], "routes": ["loopback"]}
        if t in ("tls", "dtls"):
            lis.update(cert=b64(cert), key=b64(key))
        listeners.append(lis)
    return {
        "version": "v1",
        "admin": {"name": name, "loglevel": "all:WARN", "healthcheck_endpoint": f"http://127.0.0.1:{health}"},
        "auth": {"type": "static", "realm": "stunner.l7mp.io", "credentials": {"username": "user-1", "password": "pass-1"}},
        "listeners": listeners,
        "clusters": [{"name": "loopback", "type": "STATIC", "protocol": "UDP", "endpoints": [cluster]}],
    }


class Daemon:
    """A stunnerd (ours or upstream's) on a config file, ready when /ready says so."""

    def __init__(self, which, cfg, health, tag):
        self.which = which
        path = os.path.join(WORK, f"{tag}.json")
        with open(path, "w") as f:
            json.dump(cfg, f)
        self.log_path = os.path.join(WORK, f"{tag}.log")
        log = open(self.log_path, "w")
        if which == "upstream":
            argv = [os.path.join(UP, "stunnerd"), "-c", f"file://{path}", "-l", "all:WARN"]
        else:
            argv = [os.path.join(OURS, "stunnerd"), "-c", path, "-l", "all:WARN"]
        env = clean_env()
        self.proc = subprocess.Popen(argv, stdout=log, stderr=log, env=env)
        self.health = health
        until(f"{which} stunnerd to be ready", lambda: self.proc.poll() is None and http_get(health, "/ready")[0] == 200)

    def log(self):
        return open(self.log_path).read()

    def close(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def turncat(which, transport, server_port, peer_port):
    """Starts a turncat (ours or upstream's) listening on a local UDP port; returns (proc, port)."""
    lport = free_port(socket.SOCK_DGRAM)
    uri = f"turn://user-1:pass-1@127.0.0.1:{server_port}?transport={transport}"
    if which == "upstream":
        argv = [os.path.join(UP, "turncat"), "-i", "-l", "all:WARN"]
    else:
        argv = [os.path.join(OURS, "turncat"), "--insecure"]
    argv += [f"udp://127.0.0.1:{lport}", uri, f"udp://127.0.0.1:{peer_port}"]
    log = open(os.path.join(WORK, f"turncat-{which}-{transport}.log"), "w")
    return subprocess.Popen(argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL), lport


def round_trips(lport, n=50):
    """Sends n numbered datagrams through turncat's UDP port once one echo came back;
    returns how many came back."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        s.settimeout(0.3)

        def warm():
            s.sendto(b"warm-up", ("127.0.0.1", lport))
            try:
                return s.recvfrom(2048)[0] == b"warm-up"
            except socket.timeout:
                return False
        until("the first echo through turncat", warm, timeout=20, period=0.1)
        # Late warm-up echoes are not counted.
        want = {f"msg-{i}".encode() for i in range(n)}
        for m in sorted(want):
            s.sendto(m, ("127.0.0.1", lport))
            time.sleep(0.002)
        got = set()
        end = time.time() + 5
        while time.time() < end and got != want:
            try:
                d = s.recvfrom(2048)[0]
                if d in want:
                    got.add(d)
            except socket.timeout:
                continue
        return len(got)


def interop(server, client):
    ports = {"udp": free_both(), "tcp": None, "tls": free_both(), "dtls": None}
    ports["tcp"] = ports["udp"]  # TURN-UDP and TURN-TCP on the same number, as upstream's docs do
    ports["dtls"] = ports["tls"]
    health = free_port()
    echo = Echo()
    d = Daemon(server, relay_config(f"diff/{server}", ports, health), health, f"stunnerd-{server}-{client}")
    try:
        for t in TRANSPORTS:
            p, lport = turncat(client, t, ports[t], echo.port)
            try:
                got = round_trips(lport)
            finally:
                p.terminate()
                p.wait(timeout=10)
            assert got == 50, f"{client} turncat over TURN-{t.upper()} through {server} stunnerd: {got}/50 came back\n{d.log()[-1500:]}"
            print(f"    {client} turncat -> {server} stunnerd over TURN-{t.upper()}: 50/50")
    finally:
        d.close()
        echo.stop = True


def case_upstream_turncat_through_ours():
    """Upstream turncat (pion/turn client) through our stunnerd: UDP, TCP, TLS, DTLS."""
    interop("ours", "upstream")


def case_our_turncat_through_upstream():
    """Our turncat through upstream stunnerd: UDP, TCP, TLS, DTLS."""
    interop("upstream", "ours")


class Proc:
    """A background process with its output in WORK/<tag>.log."""

    def __init__(self, argv, tag, env=None):
        self.log_path = os.path.join(WORK, f"{tag}.log")
        self.proc = subprocess.Popen(argv, stdout=open(self.log_path, "w"), stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=env)

    def log(self):
        return open(self.log_path).read()

    def close(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def standalone_operator(turn_port, cds=None):
    """Our operator in standalone mode on examples/gateway (TURN port changed), CDS on
    `cds` or a free port; returns (Proc, CDS address)."""
    d = os.path.join(WORK, "manifests")
    os.makedirs(d, exist_ok=True)
    text = open("examples/gateway/gateway.yaml").read().replace("port: 3478", f"port: {turn_port}")
    # No fixed health port: readiness is seen through the relay.
    text += "\n---\napiVersion: stunner.l7mp.io/v1\nkind: Dataplane\nmetadata: {name: default}\nspec: {disableHealthCheck: true}\n"
    open(os.path.join(d, "gateway.yaml"), "w").write(text)
    cds = cds or f"127.0.0.1:{free_port()}"
    op = Proc([os.path.join(OURS, "stunner-gateway-operator"), "standalone", "-f", d,
               "--config-discovery-address", cds, "--poll-interval", "200ms"], "operator")
    return op, cds


def case_upstream_stunnerd_on_our_cds():
    """Upstream stunnerd takes its config from our operator's CDS (standalone mode, the
    example Gateway) and relays upstream turncat's traffic; upstream stunnerctl reads the
    same config from our CDS."""
    turn_port = free_both()
    env = clean_env()
    env["STUNNER_ADDR"] = "127.0.0.1"
    # Upstream v1.2.1 races with itself when the first real config turns off the health
    # check that its boot config started: the server goroutine reads the field that the
    # reconcile has just set to nil, and stunnerd dies (nil dereference in
    # reconcileHealthCheck; 1 run in 6 here). Upstream is started first, so its boot-time
    # health server is serving before our CDS (which it keeps retrying) answers.
    cds = f"127.0.0.1:{free_port()}"
    d = Proc([os.path.join(UP, "stunnerd"), "-c", cds, "-i", "stunner/udp-gateway", "-w", "-l", "all:INFO"],
             "stunnerd-upstream-cds", env=env)
    time.sleep(1.5)
    op, cds = standalone_operator(turn_port, cds)
    echo = Echo()
    try:
        p, lport = turncat("upstream", "udp", turn_port, echo.port)
        try:
            got = round_trips(lport)
        except AssertionError as e:
            raise AssertionError(f"{e}\nupstream stunnerd:\n{d.log()[-2000:]}\noperator:\n{op.log()[-1500:]}") from None
        finally:
            p.terminate()
            p.wait(timeout=10)
        assert got == 50, f"{got}/50 came back\n{d.log()[-1500:]}"
        assert "stunner/udp-gateway/udp-listener" in d.log(), d.log()[-1500:]
        print("    upstream stunnerd configured by our CDS relayed upstream turncat: 50/50")
        for which in ["upstream", "ours"]:
            # Upstream's form: the host in --cds-server-address, the port on its own.
            host, port = cds.rsplit(":", 1)
            r = subprocess.run([os.path.join(UP if which == "upstream" else OURS, "stunnerctl"), "-n", "stunner",
                                "config", "udp-gateway", "--cds-server-address", host, "--cds-server-port", port,
                                "-o", "json"],
                               capture_output=True, text=True, timeout=30, env=env)
            assert r.returncode == 0, f"{which} stunnerctl: {r.stdout} {r.stderr}"
            cfg = json.loads(r.stdout)
            names = [l["name"] for l in cfg["listeners"]]
            assert names == ["stunner/udp-gateway/udp-listener"], names
            assert cfg["admin"]["name"] == "stunner/udp-gateway", cfg["admin"]
            print(f"    {which} stunnerctl config -o json from our CDS: listeners {names}")
    finally:
        d.close()
        op.close()
        echo.stop = True


def case_upstream_stunnerctl_auth_on_ours():
    """Upstream stunnerctl asks our auth service (fed by our operator's CDS) for TURN
    credentials and ICE configs, with upstream's flags; ours asks the same with the same
    flags; both print the same JSON, and it carries the Gateway's credentials and URI."""
    turn_port = free_both()
    op, cds = standalone_operator(turn_port)
    auth_port = free_port()
    auth = Proc([os.path.join(OURS, "stunner-auth-service"), "--address", "127.0.0.1", "-p", str(auth_port),
                 "--cds-server-address", cds, "-l", "all:INFO"], "auth-service")
    env = clean_env()
    try:
        until("our auth service to know the Gateway",
              lambda: http_get(auth_port, "/?service=turn&namespace=stunner&gateway=udp-gateway")[0] == 200,
              timeout=30)
        for form in ["--auth-turn-credential", None]:
            outs = {}
            for which in ["upstream", "ours"]:
                argv = [os.path.join(UP if which == "upstream" else OURS, "stunnerctl"), "-n", "stunner", "auth",
                        "udp-gateway", "--auth-server-address", "127.0.0.1", "--auth-service-port", str(auth_port),
                        "-o", "json"]
                argv += [form] if form else []
                argv += ["--show-secrets"] if which == "ours" else []
                r = subprocess.run(argv, capture_output=True, text=True, timeout=30, env=env)
                assert r.returncode == 0, f"{which} stunnerctl {' '.join(argv[1:])}: {r.stdout} {r.stderr}\n{auth.log()[-1500:]}"
                outs[which] = json.loads(r.stdout)
            what = "TURN credentials" if form else "ICE config"
            assert outs["upstream"] == outs["ours"], f"{what} differ:\n  upstream: {outs['upstream']}\n  ours:     {outs['ours']}"
            v = outs["ours"]
            server = v if form else v["iceServers"][0]
            uri = f"turn:127.0.0.1:{turn_port}?transport=udp"
            assert server["username"] == "user-1" and server.get("password", server.get("credential")) == "pass-1", v
            assert uri in (server["uris"] if form else server["urls"]), v
            print(f"    upstream and our stunnerctl auth ({what}) from our auth service: the same JSON, {uri}")
    finally:
        auth.close()
        op.close()


# --- the auth service: upstream's and ours on one CDS --------------------------------------

class Skip(Exception):
    """A case that cannot run on this machine; the message says why."""


AUTH_WORLD = """\
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: static-class}
spec:
  controllerName: stunner.l7mp.io/gateway-operator
  parametersRef: {group: stunner.l7mp.io, kind: GatewayConfig, name: static-config, namespace: stunner}
---
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: ephemeral-class}
spec:
  controllerName: stunner.l7mp.io/gateway-operator
  parametersRef: {group: stunner.l7mp.io, kind: GatewayConfig, name: ephemeral-config, namespace: stunner}
---
apiVersion: stunner.l7mp.io/v1
kind: GatewayConfig
metadata: {name: static-config, namespace: stunner}
spec: {realm: stunner.l7mp.io, authType: static, userName: user-1, password: pass-1}
---
apiVersion: stunner.l7mp.io/v1
kind: GatewayConfig
metadata: {name: ephemeral-config, namespace: stunner}
spec: {realm: stunner.l7mp.io, authType: ephemeral, sharedSecret: my-secret}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: g1, namespace: stunner}
spec:
  gatewayClassName: static-class
  addresses: [{value: 127.0.0.1}]
  listeners:
    - {name: udp, port: 3478, protocol: TURN-UDP}
    - {name: tcp, port: 3479, protocol: TURN-TCP}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: g2, namespace: media}
spec:
  gatewayClassName: ephemeral-class
  addresses: [{value: 127.0.0.2}]
  listeners:
    - {name: udp, port: 3480, protocol: TURN-UDP}
---
apiVersion: stunner.l7mp.io/v1
kind: Dataplane
metadata: {name: default}
spec: {disableHealthCheck: true}
"""

# (path and query, what it asks). Every query is sent to both services.
AUTH_QUERIES = [
    ("/?service=turn&namespace=stunner", "TURN credentials, static, one namespace"),
    ("/?service=turn&namespace=stunner&gateway=g1", "one Gateway"),
    ("/?service=turn&namespace=stunner&gateway=g1&listener=tcp", "one listener"),
    ("/?service=turn&namespace=stunner&gateway=g1&username=alice&ttl=600", "static ignores username and ttl"),
    ("/?service=turn&namespace=media&gateway=g2", "ephemeral, default ttl"),
    ("/?service=turn&namespace=media&gateway=g2&username=alice&ttl=600", "ephemeral with username and ttl"),
    ("/?service=turn&namespace=media&public-addr=127.0.0.9", "public-addr override"),
    ("/?service=turn&namespace=stunner&key=whatever", "key"),
    ("/?service=turn&namespace=stunner&gateway=nope", "unknown Gateway"),
    ("/?service=turn&namespace=stunner&gateway=g1&listener=nope", "unknown listener"),
    ("/?service=turn&namespace=nowhere", "unknown namespace"),
    ("/?service=turn&gateway=g1", "gateway without namespace"),
    ("/?service=turn&namespace=stunner&listener=udp", "listener without gateway"),
    ("/?service=stun&namespace=stunner", "service other than turn"),
    ("/?namespace=stunner", "no service"),
    ("/?service=turn&namespace=stunner&ttl=abc", "ttl not a number"),
    ("/ice?service=turn", "ICE config, every Gateway"),
    ("/ice?service=turn&namespace=stunner&gateway=g1", "ICE config, one Gateway"),
    ("/ice?service=turn&namespace=stunner&gateway=g1&listener=udp", "ICE config, one listener"),
    ("/ice?service=turn&namespace=media&username=bob&ttl=60", "ICE config, ephemeral"),
    ("/ice?service=turn&iceTransportPolicy=relay", "iceTransportPolicy relay"),
    ("/ice?service=turn&iceTransportPolicy=public", "iceTransportPolicy public"),
    ("/ice?service=turn&iceTransportPolicy=bogus", "iceTransportPolicy not an enum value"),
    ("/ice?service=turn&namespace=nowhere", "ICE config, no match"),
    ("/ice?namespace=stunner", "ICE config, no service"),
    ("/ice?service=turn&ttl=-5", "negative ttl"),
]

# Differences the side-by-side test allows, by query; each is listed in docs/MIGRATING.md
# ("What we fixed", the auth service's stricter queries).
AUTH_DIFFERENCES = {
    "/?service=turn&gateway=g1": "gateway without namespace: 400 (upstream ignores the filter)",
    "/?service=turn&namespace=stunner&listener=udp": "listener without gateway: 400 (upstream ignores the filter)",
    "/?service=turn&namespace=stunner&ttl=abc": "a ttl that is no integer: 400 worded by us (upstream's names Go's strconv)",
    "/ice?service=turn&iceTransportPolicy=bogus": "iceTransportPolicy outside all|public|relay: 400 (upstream echoes it)",
    "/ice?service=turn&ttl=-5": "a ttl below 1: 400 (upstream hands out expired credentials)",
}


def ephemeral_ok(username, password, ttl, secret="my-secret"):
    """RFC 8489-style time-windowed credentials (TURN REST API): `<expiry>:<user>` and
    base64(HMAC-SHA1(secret, username)); returns the username with the expiry replaced."""
    import hashlib
    import hmac
    ts, _, user = username.partition(":")
    want = base64.b64encode(hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()).decode()
    assert password == want, f"password {password!r} is not the HMAC of {username!r}"
    assert abs(int(ts) - (time.time() + ttl)) < 10, f"expiry {ts} is not now + {ttl}"
    return f"<expiry>:{user}"


def normalise_auth(query, status, body):
    """(status, JSON with ephemeral credentials checked and replaced, iceServers sorted) or
    (status, the error text)."""
    try:
        v = json.loads(body)
    except ValueError:
        return status, body.strip()
    if not isinstance(v, dict):
        return status, v
    ttl = 86400
    for part in query.split("?", 1)[-1].split("&"):
        if part.startswith("ttl="):
            try:
                ttl = int(part[4:])
            except ValueError:
                pass
    servers = v.get("iceServers", [v] if "username" in v else [])
    for srv in servers:
        pw_key = "credential" if "credential" in srv else "password"
        if ":" in srv.get("username", ""):
            srv["username"] = ephemeral_ok(srv["username"], srv[pw_key], ttl)
            srv[pw_key] = "<hmac>"
    if "iceServers" in v:
        v["iceServers"] = sorted(v["iceServers"], key=lambda s: json.dumps(s, sort_keys=True))
    return status, v


def case_auth_service():
    """Upstream's auth service (v1.1.0) and ours, fed by one CDS (our operator, standalone,
    two Gateways: static and ephemeral credentials), answer every query of AUTH_QUERIES
    alike: the same status and the same JSON, ephemeral credentials checked (HMAC, expiry)
    and compared without their timestamp; error texts compared too. Upstream's binary is
    not built here (the Go module proxy refuses the module): UPSTREAM_AUTH_BIN names one."""
    up_bin = os.environ.get("UPSTREAM_AUTH_BIN", "")
    if not os.access(up_bin, os.X_OK):
        raise Skip("no upstream auth service: the Go module proxy refuses github.com/l7mp/stunner-auth-service, "
                   "so nothing builds it; set UPSTREAM_AUTH_BIN to a v1.1.0 binary to run this case")
    d = os.path.join(WORK, "auth-manifests")
    os.makedirs(d, exist_ok=True)
    open(os.path.join(d, "world.yaml"), "w").write(AUTH_WORLD)
    cds = f"127.0.0.1:{free_port()}"
    op = Proc([os.path.join(OURS, "stunner-gateway-operator"), "standalone", "-f", d,
               "--config-discovery-address", cds, "--poll-interval", "200ms"], "auth-operator")
    host, cport = cds.rsplit(":", 1)
    ports = {"upstream": free_port(), "ours": free_port()}
    env = clean_env()
    # Upstream's has no address flag: it listens on every interface (only 127.0.0.1 is asked).
    procs = {
        "upstream": Proc([up_bin, "-p", str(ports["upstream"]), "--cds-server-address", host,
                          "--cds-server-port", cport, "-l", "all:INFO"], "auth-upstream", env=env),
        "ours": Proc([os.path.join(OURS, "stunner-auth-service"), "--address", "127.0.0.1", "-p", str(ports["ours"]),
                      "--cds-server-address", host, "--cds-server-port", cport, "-l", "all:INFO"], "auth-ours", env=env),
    }
    try:
        for which, port in ports.items():
            until(f"the {which} auth service to know both Gateways",
                  lambda: len(json.loads(http_get(port, "/ice?service=turn")[1]).get("iceServers", [])) == 2,
                  timeout=30)
        diffs = {}
        for query, what in AUTH_QUERIES:
            got = {w: normalise_auth(query, *http_get(p, query)) for w, p in ports.items()}
            if got["upstream"] != got["ours"]:
                diffs[query] = got
                print(f"    DIFFERENT {what}: {query}\n      upstream: {got['upstream']}\n      ours:     {got['ours']}")
            else:
                print(f"    same {what}: {query} -> {got['ours'][0]}")
        unexpected = sorted(set(diffs) - set(AUTH_DIFFERENCES))
        stale = sorted(set(AUTH_DIFFERENCES) - set(diffs))
        assert not unexpected, f"undocumented differences: {unexpected}"
        assert not stale, f"listed differences that no longer differ: {stale}"
    finally:
        for p in procs.values():
            p.close()
        op.close()


# --- configs: what each stunnerd accepts, and what it makes of it -----------------------

def ikey(d, name):
    """The key of dict d that equals name case-insensitively (upstream's decoder ignores case)."""
    return next((k for k in d if isinstance(k, str) and k.lower() == name.lower()), None)


def localise(cfg):
    """The config with this machine's free ports: the health endpoint on a free port,
    metrics off, each listener with a valid port on a free one. Returns (cfg, health)."""
    import copy
    cfg = copy.deepcopy(cfg)
    health = free_port()
    if isinstance(cfg, dict):
        admin = cfg.setdefault(ikey(cfg, "admin") or "admin", {})
        if isinstance(admin, dict):
            for k in [k for k in admin if k.lower() in ("healthcheck_endpoint", "metrics_endpoint")]:
                del admin[k]
            admin["healthcheck_endpoint"] = f"http://127.0.0.1:{health}"
        for lis in cfg.get(ikey(cfg, "listeners") or "listeners", None) or []:
            pk = ikey(lis, "port") if isinstance(lis, dict) else None
            if pk and isinstance(lis[pk], int) and 0 < lis[pk] < 65536:
                lis[pk] = free_both()
    return cfg, health


def verdict(which, cfg, tag, wait=6):
    """Runs one stunnerd on cfg: ("accepted", normalised status) once /ready answers 200,
    ("rejected", first error line) if it exits, ("unready", log tail) otherwise."""
    import yaml
    cfg, health = localise(cfg)
    path = os.path.join(WORK, f"cfg-{tag}-{which}.yaml")
    with open(path, "w") as f:
        f.write(cfg if isinstance(cfg, str) else yaml.safe_dump(cfg))
    env = clean_env()
    env["STUNNER_ADDR"] = "127.0.0.1"
    argv = ([os.path.join(UP, "stunnerd"), "-c", f"file://{path}"] if which == "upstream"
            else [os.path.join(OURS, "stunnerd"), "-c", path]) + ["-l", "all:WARN"]
    p = Proc(argv, f"cfg-{tag}-{which}", env=env)
    try:
        end = time.time() + wait
        while time.time() < end:
            if p.proc.poll() is not None:
                err = [l for l in p.log().splitlines() if "rror" in l or "invalid" in l.lower()]
                return "rejected", (err or p.log().splitlines() or ["(no output)"])[0][-200:]
            try:
                code, body = http_get(health, "/status")
                if code == 200 and http_get(health, "/ready")[0] == 200:
                    return "accepted", normalise_status(json.loads(body))
            except (OSError, ValueError):
                pass
            time.sleep(0.2)
        return "unready", p.log()[-300:]
    finally:
        p.close()


def normalise_status(st):
    """What both /status bodies say of the config: listeners, clusters, auth; the parts
    each renders its own way (stats, masks, ports we chose, licence) left out."""
    def lis(l):
        return {"name": l.get("name"), "protocol": l.get("protocol"), "address": l.get("address"),
                "routes": sorted(l.get("routes") or [])}

    def clu(c):
        return {"name": c.get("name"), "type": c.get("type"), "protocol": c.get("protocol"),
                "endpoints": sorted(c.get("endpoints") or [])}
    auth = st.get("auth", {})
    return {
        "admin.name": st.get("admin", {}).get("name"),
        "auth": {"type": auth.get("type"), "realm": auth.get("realm")},
        "listeners": sorted((lis(l) for l in st.get("listeners", [])), key=lambda x: x["name"] or ""),
        "clusters": sorted((clu(c) for c in st.get("clusters", [])), key=lambda x: x["name"] or ""),
    }


def config_cases():
    import yaml
    base = yaml.safe_load(open("examples/local-loopback.yaml"))
    cases = {}
    for f in ["full-v1.yaml", "v1alpha1.yaml", "camelcase-unknown.yaml"]:
        cases[f] = yaml.safe_load(open(os.path.join("crates/stunner-config/testdata", f)))
    cases["local-loopback.yaml"] = base
    # full-v1.yaml with a certificate that parses (its own is a placeholder).
    import copy
    real = copy.deepcopy(cases["full-v1.yaml"])
    cert, key = tls_pair()
    for l in real["listeners"]:
        if "cert" in l:
            l.update(cert=base64.b64encode(cert).decode(), key=base64.b64encode(key).decode())
    cases["full-v1.yaml with a real certificate"] = real

    def variant(name, fn):
        import copy
        c = copy.deepcopy(base)
        fn(c)
        cases[name] = c
    variant("bad-protocol", lambda c: c["listeners"][0].update(protocol="TURN-FOO"))
    variant("port-out-of-range", lambda c: c["listeners"][0].update(port=70000))
    variant("no-version", lambda c: c.pop("version"))
    variant("version-v2", lambda c: c.update(version="v2"))
    variant("bad-cluster-type", lambda c: c["clusters"][0].update(type="ROUND_ROBIN"))
    variant("bad-endpoint", lambda c: c["clusters"][0].update(endpoints=["10.0.0.0/33"]))
    variant("bad-auth-type", lambda c: c["auth"].update(type="kerberos"))
    variant("ephemeral-without-secret", lambda c: c.update(auth={"type": "ephemeral", "credentials": {}}))
    variant("duplicate-listener", lambda c: c["listeners"].append(dict(c["listeners"][0])))
    variant("route-to-missing-cluster", lambda c: c["listeners"][0].update(routes=["nowhere"]))
    variant("tls-without-cert", lambda c: c["listeners"][0].update(protocol="TURN-TLS"))
    variant("strict-dns", lambda c: c["clusters"][0].update(type="STRICT_DNS", endpoints=["localhost"]))
    variant("udp-port-range", lambda c: c["clusters"][0].update(endpoints=["127.0.0.1/32:<10000-20000>"]))
    variant("short-protocol-names", lambda c: [l.update(protocol=l["protocol"].removeprefix("TURN-").lower()) for l in c["listeners"]])
    cases["yaml-syntax-error"] = "version: v1\nlisteners: [\n"
    return cases


# Differences the upstream binary shows on purpose or by its bug, each with its reason, as
# docs/MIGRATING.md lists them. A difference not here fails the test; so does an entry
# here that no longer differs (the list stays exact).
CONFIG_DIFFERENCES = {
    "full-v1.yaml": "a TLS certificate that does not parse: ours exits at start naming the listener; "
                    "upstream keeps running without a config, unready",
    "v1alpha1.yaml": "short protocol name `udp`: upstream validates it, then cannot start the listener "
                     "(\"internal error: unknown listener protocol\")",
    "short-protocol-names": "the same upstream bug as v1alpha1.yaml",
    "camelcase-unknown.yaml": "auth type `LongTerm`: ours takes auth type names in any case, upstream only "
                              "lower case",
    "duplicate-listener": "two listeners with one name: ours rejects the config, upstream keeps one of them "
                          "silently",
}


def case_configs():
    """Every config under our test data, the example, and one variant per rule: upstream
    stunnerd and ours accept and reject the same ones, and where both accept, their
    /status says the same of listeners, clusters and auth."""
    diffs = {}
    for name, cfg in config_cases().items():
        tag = "".join(ch if ch.isalnum() else "-" for ch in name)
        up = verdict("upstream", cfg, tag)
        ours = verdict("ours", cfg, tag)
        same = up[0] == ours[0] and (up[0] != "accepted" or up[1] == ours[1])
        line = f"{name}: upstream {up[0]}, ours {ours[0]}"
        print(f"    {line}" + ("" if same else f"  <-- differs\n      upstream: {up[1]}\n      ours:     {ours[1]}"))
        if not same:
            diffs[name] = (up, ours)
    unexpected = sorted(set(diffs) - set(CONFIG_DIFFERENCES))
    stale = sorted(set(CONFIG_DIFFERENCES) - set(diffs))
    assert not unexpected, f"undocumented differences: {unexpected}"
    assert not stale, f"listed differences that no longer differ: {stale}"


CASES = [case_upstream_turncat_through_ours, case_our_turncat_through_upstream, case_upstream_stunnerd_on_our_cds,
         case_upstream_stunnerctl_auth_on_ours, case_configs, case_auth_service]


def main():
    only = {a.removeprefix("case_") for a in sys.argv[1:]}
    passed = failed = skipped = 0
    for case in CASES:
        name = case.__name__.removeprefix("case_")
        if only and name not in only:
            continue
        t0 = time.time()
        print(f"upstream-diff: {name} ...", flush=True)
        try:
            case()
            passed += 1
            print(f"upstream-diff: {name} ok ({time.time() - t0:.0f}s)", flush=True)
        except Skip as e:
            skipped += 1
            print(f"upstream-diff: {name} SKIPPED: {e}", flush=True)
        except Exception:  # noqa: BLE001 - every case reports
            failed += 1
            print(f"upstream-diff: {name} FAILED ({time.time() - t0:.0f}s)\n{traceback.format_exc()}", flush=True)
    print(f"upstream-diff: {passed} passed, {failed} failed, {skipped} skipped")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
