#!/usr/bin/env python3
"""Captures a real browser's TURN Allocate requests for the tests.

Runs headless Chromium against a fake TURN server on 127.0.0.1 that answers the first
Allocate with 401 (realm "stunner.l7mp.io" and the nonce the test server makes at t=0
with key [42; 32]) and records the unsigned and the signed Allocate in hex.

    apt-get install -y chromium && python3 capture.py
"""
import hashlib, hmac, http.server, os, socket, struct, subprocess, sys, tempfile, threading

REALM = b"stunner.l7mp.io"
KEY = bytes([42] * 32)
EXPIRY = 3600  # nonce lifetime from the server's epoch

def nonce():
    e = struct.pack(">Q", EXPIRY)
    return (e + hmac.new(KEY, e, hashlib.sha1).digest()[:8]).hex().encode()

def attr(t, v):
    pad = (4 - len(v) % 4) % 4
    return struct.pack(">HH", t, len(v)) + v + b"\0" * pad

def unauthorized(req):
    body = attr(0x0009, b"\0\0\x04\x01Unauthorized") + attr(0x0014, REALM) + attr(0x0015, nonce())
    return struct.pack(">HH", 0x0113, len(body)) + req[4:20] + body

udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
udp.bind(("127.0.0.1", 0))
udp.settimeout(30)
port = udp.getsockname()[1]

PAGE = f"""<script>
const pc = new RTCPeerConnection({{iceServers: [{{urls: 'turn:127.0.0.1:{port}?transport=udp',
  username: 'user', credential: 'pass'}}], iceTransportPolicy: 'relay'}});
pc.createDataChannel('x');
pc.createOffer().then(o => pc.setLocalDescription(o));
</script>""".encode()

class Page(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.end_headers()
        self.wfile.write(PAGE)
    def log_message(self, *a):
        pass

httpd = http.server.HTTPServer(("127.0.0.1", 0), Page)
threading.Thread(target=httpd.serve_forever, daemon=True).start()
profile = tempfile.mkdtemp()
browser = subprocess.Popen([
    "/usr/lib/chromium/chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
    "--no-first-run", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", f"--user-data-dir={profile}", "--allow-loopback-in-peer-connection",
    "--no-proxy-server", "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE localhost , EXCLUDE 127.0.0.1",
    f"http://127.0.0.1:{httpd.server_address[1]}/"],
    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
try:
    got = []
    while len(got) < 2:
        data, peer = udp.recvfrom(2048)
        if struct.unpack(">H", data[:2])[0] != 0x0003:
            continue
        got.append(data)
        if len(got) == 1:
            udp.sendto(unauthorized(data), peer)
    here = os.path.dirname(os.path.abspath(__file__))
    for name, data in zip(["allocate-unsigned.hex", "allocate-signed.hex"], got):
        with open(os.path.join(here, name), "w") as f:
            f.write(f"# Chromium TURN Allocate, captured by capture.py (user/pass, realm stunner.l7mp.io)\n")
            f.write(data.hex() + "\n")
    print("captured", [len(g) for g in got])
finally:
    browser.kill()
    httpd.shutdown()
