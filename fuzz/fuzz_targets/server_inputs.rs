//! Arbitrary input sequences into a server: requests from a real client, junk, peer
//! datagrams, relay answers and time. The server must never panic.
#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use stunner_turn::{
    CHANNEL_HEADROOM, CHANNEL_TAILROOM, Client, Credentials, FiveTuple, Output, PeerPolicy,
    Received, Request, Server, ServerConfig, TransportKind,
};

fuzz_target!(|data: &[u8]| {
    let start = Instant::now();
    let mut now = start;
    let config = ServerConfig {
        realm: "r".into(),
        credentials: Credentials::Static { username: "u".into(), password: "p".into() },
        relay_ip: [10, 0, 0, 1].into(),
        policy: PeerPolicy::from_endpoints("c", &["10.1.0.0/16".parse().unwrap()]),
        user_quota: 2,
        transport: TransportKind::Datagram,
        nonce_lifetime: Duration::from_secs(3600),
    };
    let mut s = Server::new(config, now, 0, [0; 32]);
    let fts: Vec<FiveTuple> = (0..3)
        .map(|i| FiveTuple {
            client: format!("192.0.2.1:{}", 1000 + i).parse().unwrap(),
            server: "10.0.0.1:3478".parse().unwrap(),
        })
        .collect();
    let mut clients: Vec<Client> =
        (0..3).map(|i| Client::new("u", "p", TransportKind::Datagram, i + 1)).collect();
    let peer = "10.1.0.5:9000".parse().unwrap();
    let mut pending = Vec::new();
    let mut port = 40000u16;
    let mut i = 0;
    while i + 2 <= data.len() {
        let (op, arg) = (data[i], data[i + 1]);
        i += 2;
        let c = usize::from(arg % 3);
        match op % 6 {
            0 => {
                let req = match arg / 3 % 6 {
                    0 => Request::Allocate { lifetime: Some(u32::from(arg) * 10) },
                    1 => Request::Refresh { lifetime: u32::from(arg % 2) * 600 },
                    2 => Request::CreatePermission { peers: vec![peer] },
                    3 => Request::ChannelBind { channel: 0x4000 + u16::from(arg % 4), peer },
                    4 => Request::Binding,
                    _ => Request::ChannelBind { channel: u16::from(arg) << 8, peer },
                };
                let b = clients[c].request(req);
                let _ = s.handle_client(now, fts[c], &b);
            }
            1 => {
                let len = usize::from(arg).min(data.len() - i);
                let _ = s.handle_client(now, fts[c], &data[i..i + len]);
                i += len;
            }
            2 => {
                let len = usize::from(arg).min(data.len() - i);
                let mut buf = vec![0; CHANNEL_HEADROOM + len + CHANNEL_TAILROOM];
                buf[CHANNEL_HEADROOM..CHANNEL_HEADROOM + len].copy_from_slice(&data[i..i + len]);
                i += len;
                let relay = std::net::SocketAddr::new([10, 0, 0, 1].into(), 40001 + u16::from(arg % 4));
                let _ = s.handle_peer(now, relay, peer, &mut buf, len);
            }
            3 => now += Duration::from_secs(u64::from(arg) * 7),
            4 => {
                if let Some(t) = pending.pop() {
                    port += 1;
                    s.handle_relay_opened(now, t, (arg % 5 != 0).then_some(port));
                }
            }
            _ => s.handle_client_closed(now, fts[c]),
        }
        while let Some(o) = s.poll_output() {
            match o {
                Output::OpenRelay(r) => pending.push(r.token),
                Output::Transmit(t) => {
                    if let Some(k) = fts.iter().position(|f| f.client == t.to)
                        && let Received::Retry(b) = clients[k].receive(&t.data)
                    {
                        let _ = s.handle_client(now, fts[k], &b);
                    }
                }
                _ => {}
            }
        }
        s.handle_timeout(now);
        assert!(s.allocation_count() <= 3);
    }
    let _ = s.poll_timeout();
    s.close_all(now);
    assert_eq!(s.allocation_count(), 0);
});
