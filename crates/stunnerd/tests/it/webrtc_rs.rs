//! The webrtc-rs `turn` client (an independent TURN implementation) relays through
//! stunnerd to a UDP echo peer and back.

use std::sync::Arc;
use std::time::Duration;

use turn::client::{Client, ClientConfig};
use webrtc_util::Conn;

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webrtc_rs_turn_client_relays() {
    let (port, health) = (free_port(), free_port());
    let d = Stunnerd::start(
        "webrtc-rs",
        &config(port, health, STATIC_AUTH, "127.0.0.1/32"),
        health,
        &[],
    );
    d.wait_ready(200, Duration::from_secs(5));

    let peer = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let peer_addr = peer.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = [0u8; 1500];
        while let Ok((n, from)) = peer.recv_from(&mut buf).await {
            let _ = peer.send_to(&buf[..n], from).await;
        }
    });

    let conn = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let server = format!("127.0.0.1:{port}");
    let client = Client::new(ClientConfig {
        stun_serv_addr: server.clone(),
        turn_serv_addr: server,
        username: "user".into(),
        password: "pass".into(),
        realm: "stunner.l7mp.io".into(),
        software: String::new(),
        rto_in_ms: 0,
        conn: Arc::new(conn),
        vnet: None,
    })
    .await
    .unwrap();
    client.listen().await.unwrap();
    let relay = client.allocate().await.unwrap();
    let relayed = relay.local_addr().unwrap();
    assert_eq!(relayed.ip().to_string(), "127.0.0.1", "{}", d.log_text());

    let mut buf = [0u8; 1500];
    let mut echoed = 0;
    for i in 0..20 {
        let msg = format!("hello {i}");
        relay.send_to(msg.as_bytes(), peer_addr).await.unwrap();
        if let Ok(Ok((n, from))) =
            tokio::time::timeout(Duration::from_secs(2), relay.recv_from(&mut buf)).await
        {
            assert_eq!(from, peer_addr);
            assert_eq!(&buf[..n], msg.as_bytes());
            echoed += 1;
        }
    }
    // The first datagram may race the permission; the rest must come back.
    assert!(echoed >= 19, "only {echoed} of 20 echoed: {}", d.log_text());
    let mapped = client.send_binding_request().await.unwrap();
    assert_eq!(mapped.ip().to_string(), "127.0.0.1");
    relay.close().await.unwrap();
    client.close().await.unwrap();
}
