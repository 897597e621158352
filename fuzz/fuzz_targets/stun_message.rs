//! Arbitrary bytes from a client, over datagrams and streams, and into the client.
#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use stunner_turn::{
    Client, Credentials, FiveTuple, PeerPolicy, Server, ServerConfig, TransportKind,
};

fuzz_target!(|data: &[u8]| {
    let now = Instant::now();
    for transport in [TransportKind::Datagram, TransportKind::Stream] {
        let config = ServerConfig {
            realm: "r".into(),
            credentials: Credentials::Static { username: "u".into(), password: "p".into() },
            relay_ip: [10, 0, 0, 1].into(),
            alternate_relay_ip: Some("fd00::1".parse().unwrap()),
            policy: PeerPolicy::from_endpoints("c", &["0.0.0.0/0".parse().unwrap()]),
            user_quota: 0,
            transport,
            nonce_lifetime: Duration::from_secs(3600),
        };
        let mut s = Server::new(config, now, 0, [0; 32]);
        let ft = FiveTuple {
            client: "192.0.2.1:1".parse().unwrap(),
            server: "10.0.0.1:3478".parse().unwrap(),
        };
        let _ = s.handle_client(now, ft, data);
        while s.poll_output().is_some() {}
        let _ = Client::new("u", "p", transport, 1).receive(data);
    }
});
