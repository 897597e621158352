//! Headless Chromium opens a WebRTC data channel between two peer connections forced
//! to relay candidates through stunnerd, over TURN-UDP and TURN-TCP.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::harness::*;

const CHROMIUM: &str = "/usr/lib/chromium/chromium";

fn page(turn_url: &str) -> String {
    let cfg = format!(
        "{{iceServers: [{{urls: '{turn_url}', username: 'user', credential: 'pass'}}], iceTransportPolicy: 'relay'}}"
    );
    page_with(&cfg)
}

/// The test page with this RTCConfiguration (a JS object literal or JSON).
pub fn page_with(cfg: &str) -> String {
    format!(
        r#"<!doctype html><script>
const cfg = {cfg};
const report = (r) => fetch('/result?' + new URLSearchParams(r));
const pc1 = new RTCPeerConnection(cfg), pc2 = new RTCPeerConnection(cfg);
pc1.onicecandidate = e => e.candidate && pc2.addIceCandidate(e.candidate);
pc2.onicecandidate = e => e.candidate && pc1.addIceCandidate(e.candidate);
const dc = pc1.createDataChannel('test');
// The selected pair, read the way the stats spec defines it (the transport's
// selectedCandidatePairId); Chromium may publish it a moment after the first message,
// so look again for up to 3 s before reporting none.
const selectedPair = async () => {{
  for (let i = 0; i < 30; i++) {{
    const stats = await pc1.getStats();
    let id = null;
    stats.forEach(s => {{ if (s.type === 'transport' && s.selectedCandidatePairId) id = s.selectedCandidatePairId; }});
    if (!id) stats.forEach(s => {{
      if (s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded') id = s.id;
    }});
    const p = id && stats.get(id);
    if (p) {{
      const l = stats.get(p.localCandidateId), r = stats.get(p.remoteCandidateId);
      if (l && r) return l.candidateType + '/' + r.candidateType;
    }}
    await new Promise(res => setTimeout(res, 100));
  }}
  return 'none';
}};
pc2.ondatachannel = e => e.channel.onmessage = async m => {{
  report({{msg: m.data, pair: await selectedPair()}});
}};
dc.onopen = () => dc.send('hello through stunnerd');
setTimeout(() => report({{msg: 'timeout', pair: pc1.iceConnectionState}}), 15000);
(async () => {{
  await pc1.setLocalDescription(await pc1.createOffer());
  await pc2.setRemoteDescription(pc1.localDescription);
  await pc2.setLocalDescription(await pc2.createAnswer());
  await pc1.setRemoteDescription(pc2.localDescription);
}})();
</script>"#
    )
}

/// Serves the page and returns the first `/result` query string.
fn run_browser(html: String) -> String {
    run_browser_with(html, &[])
}

pub fn run_browser_with(html: String, extra: &[String]) -> String {
    assert!(
        std::path::Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: install Debian's chromium (scripts/test does)"
    );
    let http = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = http.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for conn in http.incoming().flatten() {
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut line = String::new();
            let _ = reader.read_line(&mut line);
            let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
            let mut c = conn;
            if let Some(q) = path.strip_prefix("/result?") {
                let _ = c.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n");
                let _ = tx.send(q.to_string());
            } else {
                let _ = write!(
                    c,
                    "HTTP/1.0 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\n\r\n{}",
                    html.len(),
                    html
                );
            }
        }
    });
    let profile = tempdir("chromium");
    let mut browser = Command::new(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--allow-loopback-in-peer-connection",
            "--no-proxy-server",
            "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE localhost , EXCLUDE 127.0.0.1",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(format!("http://127.0.0.1:{port}/"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let result = rx
        .recv_timeout(Duration::from_secs(40))
        .unwrap_or_else(|_| "msg=no+report".into());
    let _ = browser.kill();
    let _ = browser.wait();
    let _ = std::fs::remove_dir_all(profile);
    result
}

fn data_channel_through(transport: &str) {
    let (port, health) = (free_port(), free_port());
    let d = Stunnerd::start(
        "browser",
        &config(port, health, STATIC_AUTH, "127.0.0.1/32"),
        health,
        &[],
    );
    d.wait_ready(200, Duration::from_secs(5));
    let result = run_browser(page(&format!(
        "turn:127.0.0.1:{port}?transport={transport}"
    )));
    assert!(
        result.contains("msg=hello+through+stunnerd") && result.contains("pair=relay%2Frelay"),
        "{transport}: {result}\n{}",
        d.log_text()
    );
    assert!(d.log_text().contains("allocation created"));
}

#[test]
fn chromium_data_channel_over_turn_udp() {
    data_channel_through("udp");
}

#[test]
fn chromium_data_channel_over_turn_tcp() {
    data_channel_through("tcp");
}

#[test]
fn chromium_data_channel_over_turn_tls() {
    use base64::Engine as _;
    use sha2::Digest as _;
    let (port, health) = (free_port(), free_port());
    let ck =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let pem = ck.signing_key.public_key_pem();
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap();
    let spki = b64(&sha2::Sha256::digest(der));
    let (cert, key) = (
        b64(ck.cert.pem().as_bytes()),
        b64(ck.signing_key.serialize_pem().as_bytes()),
    );
    let conf = tls_config_with(port, health, STATIC_AUTH, "127.0.0.1/32", &cert, &key);
    let d = Stunnerd::start("browser-tls", &conf, health, &[]);
    d.wait_ready(200, Duration::from_secs(5));
    let result = run_browser_with(
        page(&format!("turns:127.0.0.1:{port}?transport=tcp")),
        &[format!("--ignore-certificate-errors-spki-list={spki}")],
    );
    assert!(
        result.contains("msg=hello+through+stunnerd") && result.contains("pair=relay%2Frelay"),
        "tls: {result}\n{}",
        d.log_text()
    );
}
