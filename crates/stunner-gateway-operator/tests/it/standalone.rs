//! Standalone mode end to end: the operator serves configs rendered from manifest files
//! over CDS, stunnerd follows them, a TURN client relays to a StaticService peer, and a
//! credential edit in the GatewayConfig file reaches stunnerd without dropping the
//! existing allocation.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use stunner_turn::Received;

use crate::support::{EchoPeer, TurnClient, free_port, stunnerd, tempdir};

struct Operator(Child);

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn manifests(turn_port: u16, password: &str) -> String {
    let base = std::fs::read_to_string(format!(
        "{}/../../examples/gateway/gateway.yaml",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    base.replace("port: 3478", &format!("port: {turn_port}"))
        .replace("password: \"pass-1\"", &format!("password: \"{password}\""))
}

#[test]
fn standalone_operator_feeds_stunnerd_and_follows_file_edits() {
    let dir = tempdir("standalone");
    let (turn_port, cds_port) = (free_port(), free_port());
    let file = dir.join("gateway.yaml");
    // The health endpoint is off so this test binds no fixed port.
    let dataplane = "\n---\napiVersion: stunner.l7mp.io/v1\nkind: Dataplane\nmetadata: {name: default}\nspec: {disableHealthCheck: true}\n";
    std::fs::write(&file, manifests(turn_port, "pass-1") + dataplane).unwrap();
    let cds = format!("127.0.0.1:{cds_port}");
    let _op = Operator(
        Command::new(env!("CARGO_BIN_EXE_stunner-gateway-operator"))
            .args([
                "standalone",
                "-f",
                dir.to_str().unwrap(),
                "--config-discovery-address",
                &cds,
                "--poll-interval",
                "100ms",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    stunnerd(&[
        "-c",
        &cds,
        "-i",
        "stunner/udp-gateway",
        "-w",
        "-l",
        "all:WARN",
    ]);

    let echo = EchoPeer::start();
    let peer = echo.addr;
    let mut first = TurnClient::new(turn_port, "user-1", "pass-1");
    let r = first.allocate(Duration::from_secs(20));
    assert!(matches!(r, Received::Allocated { .. }), "allocate: {r:?}");
    assert!(
        first.bind_and_echo(0x4000, peer),
        "no echo through the relay"
    );

    // Change the password in the file; the operator re-renders, stunnerd reconciles.
    std::fs::write(&file, manifests(turn_port, "pass-2") + dataplane).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut second = TurnClient::new(turn_port, "user-1", "pass-2");
    loop {
        if matches!(
            second.request(stunner_turn::Request::Allocate { lifetime: None }),
            Received::Allocated { .. }
        ) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new password was not picked up"
        );
        second = TurnClient::new(turn_port, "user-1", "pass-2");
        std::thread::sleep(Duration::from_millis(100));
    }
    // The old password is refused now, and the allocation made with it still relays.
    let mut stale = TurnClient::new(turn_port, "user-1", "pass-1");
    let r = stale.request(stunner_turn::Request::Allocate { lifetime: None });
    assert!(
        matches!(r, Received::Failed { code: 401, .. }),
        "old password: {r:?}"
    );
    assert!(
        first.echo(0x4000, b"still here after the edit"),
        "existing allocation dropped"
    );
    assert!(second.bind_and_echo(0x4001, peer));
}

#[test]
fn standalone_operator_serves_cds_over_tls() {
    let dir = tempdir("standalone-tls");
    let (turn_port, cds_port) = (free_port(), free_port());
    let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
    let (crt, key) = (dir.join("tls.crt"), dir.join("tls.key"));
    std::fs::write(&crt, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
    let manifests_dir = dir.join("manifests");
    std::fs::create_dir_all(&manifests_dir).unwrap();
    let dataplane = "\n---\napiVersion: stunner.l7mp.io/v1\nkind: Dataplane\nmetadata: {name: default}\nspec: {disableHealthCheck: true}\n";
    std::fs::write(
        manifests_dir.join("gateway.yaml"),
        manifests(turn_port, "pass-tls") + dataplane,
    )
    .unwrap();
    let cds = format!("127.0.0.1:{cds_port}");
    let _op = Operator(
        Command::new(env!("CARGO_BIN_EXE_stunner-gateway-operator"))
            .args(["standalone", "-f", manifests_dir.to_str().unwrap()])
            .args(["--config-discovery-address", &cds])
            .args(["--cds-tls-cert", crt.to_str().unwrap()])
            .args(["--cds-tls-key", key.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    stunnerd(&[
        "-c",
        &format!("wss://{cds}"),
        "--cds-ca-file",
        crt.to_str().unwrap(),
        "-i",
        "stunner/udp-gateway",
        "-w",
        "-l",
        "all:WARN",
    ]);
    let echo = EchoPeer::start();
    let mut c = TurnClient::new(turn_port, "user-1", "pass-tls");
    let r = c.allocate(Duration::from_secs(20));
    assert!(matches!(r, Received::Allocated { .. }), "allocate: {r:?}");
    assert!(
        c.bind_and_echo(0x4000, echo.addr),
        "no echo through the relay"
    );
}
