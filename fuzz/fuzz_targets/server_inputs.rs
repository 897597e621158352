//! Arbitrary input sequences into a server: requests from a real client (UDP, address
//! family and RFC 6062 TCP allocations), junk, peer datagrams, relay answers, peer
//! TCP connections and their answers, stream framing, and time. The server must never
//! panic, and closing everything leaves nothing behind.
#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use stunner_turn::{
    CHANNEL_HEADROOM, CHANNEL_TAILROOM, Client, Credentials, FiveTuple, Output, PeerPolicy,
    Received, RelayFamily, Request, Server, ServerConfig, TransportKind, frame_len,
};

fuzz_target!(|data: &[u8]| {
    let start = Instant::now();
    let mut now = start;
    let Some((&mode, data)) = data.split_first() else {
        return;
    };
    // Odd modes are a TURN-TCP listener (TCP allocations, stream framing).
    let transport =
        if mode % 2 == 1 { TransportKind::Stream } else { TransportKind::Datagram };
    let mut policy = PeerPolicy::from_endpoints("c", &["10.1.0.0/16".parse().unwrap()]);
    if mode % 4 >= 2 {
        let conf = stunner_config::StunnerConfig::from_str_with_env(
            "version: v1\nauth: {credentials: {username: u, password: p}}\n\
             listeners: [{name: l, protocol: TURN-TCP, address: 10.0.0.1, routes: [c, t]}]\n\
             clusters: [{name: c, endpoints: [10.1.0.0/16, \"fd01::/64\"]},\n\
                        {name: t, protocol: TCP, endpoints: [10.1.0.0/16]}]",
            &|_: &str| None,
        );
        if let Ok(conf) = conf {
            policy = PeerPolicy::for_listener(&conf, "l");
        }
    }
    let config = ServerConfig {
        realm: "r".into(),
        credentials: Credentials::Static { username: "u".into(), password: "p".into() },
        relay_ip: [10, 0, 0, 1].into(),
        alternate_relay_ip: (mode % 8 >= 4).then(|| "fd00::1".parse().unwrap()),
        policy,
        user_quota: 2,
        transport,
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
        (0..3).map(|i| Client::new("u", "p", transport, i + 1)).collect();
    let peer = "10.1.0.5:9000".parse().unwrap();
    let peer6 = "[fd01::5]:9000".parse().unwrap();
    let mut pending = Vec::new();
    // ConnectPeer outputs not yet answered, and peer connection ids seen.
    let mut connects: Vec<u32> = Vec::new();
    let mut ids: Vec<u32> = vec![0];
    let mut relays: Vec<std::net::SocketAddr> = Vec::new();
    // Bytes of a client's stream not yet framed (stream mode).
    let mut streams: Vec<Vec<u8>> = vec![Vec::new(); 3];
    let mut port = 40000u16;
    let mut i = 0;
    while i + 2 <= data.len() {
        let (op, arg) = (data[i], data[i + 1]);
        i += 2;
        let c = usize::from(arg % 3);
        match op % 10 {
            0 => {
                let id = ids[usize::from(arg / 3) % ids.len()];
                let req = match arg / 3 % 12 {
                    0 => Request::Allocate { lifetime: Some(u32::from(arg) * 10) },
                    1 => Request::Refresh { lifetime: u32::from(arg % 2) * 600 },
                    2 => Request::CreatePermission { peers: vec![peer] },
                    3 => Request::ChannelBind { channel: 0x4000 + u16::from(arg % 4), peer },
                    4 => Request::Binding,
                    5 => Request::ChannelBind { channel: u16::from(arg) << 8, peer },
                    6 => Request::AllocateFamily {
                        lifetime: None,
                        family: [RelayFamily::Ipv4, RelayFamily::Ipv6, RelayFamily::Dual]
                            [usize::from(arg) % 3],
                    },
                    7 => Request::CreatePermission { peers: vec![peer6, peer] },
                    8 => Request::AllocateTcp { lifetime: Some(u32::from(arg) * 10) },
                    9 => Request::Connect { peer: if arg % 2 == 0 { peer } else { peer6 } },
                    _ => Request::ConnectionBind { id },
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
                if let Some((t, dual, tcp, ip)) = pending.pop() {
                    port += 2;
                    let port6 = (dual && arg % 7 != 0).then_some(port + 1);
                    let opened = (arg % 5 != 0).then_some(port);
                    if tcp && opened.is_some() {
                        relays.push(std::net::SocketAddr::new(ip, port));
                    }
                    s.handle_relays_opened(now, t, opened, port6);
                }
            }
            5 => s.handle_client_closed(now, fts[c]),
            // RFC 6062: the IO layer's answer to a Connect.
            6 => {
                if let Some(id) = connects.pop() {
                    s.handle_peer_connected(now, id, arg % 3 != 0);
                }
            }
            // A peer connects to a TCP relay.
            7 => {
                if !relays.is_empty() {
                    let relay = relays[usize::from(arg) % relays.len()];
                    let from = std::net::SocketAddr::new(peer.ip(), 5000 + u16::from(arg));
                    if let Some(id) = s.handle_peer_connection(now, relay, from) {
                        ids.push(id);
                    }
                }
            }
            8 => {
                let id = ids[usize::from(arg) % ids.len()];
                s.handle_connection_closed(now, id);
            }
            // Raw stream bytes, framed as the IO layer frames them.
            _ => {
                let len = usize::from(arg).min(data.len() - i);
                streams[c].extend_from_slice(&data[i..i + len]);
                i += len;
                loop {
                    match frame_len(&streams[c]) {
                        Ok(Some(n)) if n <= streams[c].len() => {
                            let frame: Vec<u8> = streams[c].drain(..n).collect();
                            let _ = s.handle_client(now, fts[c], &frame);
                        }
                        Ok(_) => break,
                        Err(_) => {
                            streams[c].clear();
                            s.handle_client_closed(now, fts[c]);
                            break;
                        }
                    }
                }
            }
        }
        while let Some(o) = s.poll_output() {
            match o {
                Output::OpenRelay(r) => pending.push((r.token, r.additional.is_some(), r.tcp, r.ip)),
                Output::ConnectPeer { id, .. } => {
                    connects.push(id);
                    ids.push(id);
                }
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
    assert_eq!(s.tcp_connection_count(), 0);
});
