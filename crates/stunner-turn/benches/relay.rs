//! The ChannelData relay step of the core, both ways: nanoseconds per packet (criterion)
//! and heap allocations per packet (counted by a wrapping allocator, printed first).
//!
//! `cargo bench -p stunner-turn --bench relay`

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group};
use stunner_config::Endpoint;
use stunner_turn::*;

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

struct Setup {
    server: Server,
    now: Instant,
    ft: FiveTuple,
    relay: SocketAddr,
    peer: SocketAddr,
    frame: Vec<u8>,
}

fn drive(
    server: &mut Server,
    now: Instant,
    client: &mut Client,
    ft: FiveTuple,
    req: Request,
) -> Received {
    let mut bytes = client.request(req);
    loop {
        server.handle_client(now, ft, &bytes);
        let mut answer = None;
        while let Some(o) = server.poll_output() {
            match o {
                Output::OpenRelay(r) => server.handle_relay_opened(now, r.token, Some(50000)),
                Output::Transmit(t) => answer = Some(t.data),
                _ => {}
            }
        }
        match client.receive(&answer.expect("server answered")) {
            Received::Retry(b) => bytes = b,
            other => return other,
        }
    }
}

fn setup(payload: usize) -> Setup {
    let now = Instant::now();
    let eps: Vec<Endpoint> = vec!["10.0.0.0/8".parse().expect("endpoint")];
    let config = ServerConfig {
        realm: "stunner.l7mp.io".into(),
        credentials: Credentials::Static {
            username: "u".into(),
            password: "p".into(),
        },
        relay_ip: "10.0.0.1".parse().expect("ip"),
        alternate_relay_ip: None,
        policy: PeerPolicy::from_endpoints("c", &eps),
        user_quota: 0,
        transport: TransportKind::Datagram,
        nonce_lifetime: Duration::from_secs(3600),
    };
    let mut server = Server::new(config, now, 1_700_000_000, [1; 32]);
    let ft = FiveTuple {
        client: "192.0.2.1:40000".parse().expect("addr"),
        server: "10.0.0.1:3478".parse().expect("addr"),
    };
    let peer: SocketAddr = "10.1.2.3:9000".parse().expect("addr");
    let mut client = Client::new("u", "p", TransportKind::Datagram, 1);
    let Received::Allocated { relayed, .. } = drive(
        &mut server,
        now,
        &mut client,
        ft,
        Request::Allocate { lifetime: None },
    ) else {
        panic!("allocate failed")
    };
    drive(
        &mut server,
        now,
        &mut client,
        ft,
        Request::ChannelBind {
            channel: 0x4000,
            peer,
        },
    );
    let frame = client.channel_data(0x4000, &vec![0x55; payload]);
    Setup {
        server,
        now,
        ft,
        relay: relayed,
        peer,
        frame,
    }
}

fn allocations_per_packet() {
    let _profiler = dhat::Profiler::builder().testing().build();
    let mut s = setup(100);
    let mut buf = vec![0u8; CHANNEL_HEADROOM + 100 + CHANNEL_TAILROOM];
    let n = 10_000u64;
    let before = dhat::HeapStats::get().total_blocks;
    for _ in 0..n {
        black_box(s.server.handle_client(s.now, s.ft, &s.frame));
        black_box(s.server.handle_peer(s.now, s.relay, s.peer, &mut buf, 100));
    }
    let allocs = dhat::HeapStats::get().total_blocks - before;
    println!(
        "heap allocations per relayed packet (ChannelData, both ways): {:.3}",
        allocs as f64 / (2 * n) as f64
    );
}

fn relay(c: &mut Criterion) {
    for payload in [100usize, 1200] {
        let mut s = setup(payload);
        let mut g = c.benchmark_group(format!("channel_data_{payload}B"));
        g.throughput(Throughput::Elements(1));
        g.bench_function("client_to_peer", |b| {
            b.iter(|| black_box(s.server.handle_client(s.now, s.ft, black_box(&s.frame))))
        });
        let mut buf = vec![0u8; CHANNEL_HEADROOM + payload + CHANNEL_TAILROOM];
        g.bench_function("peer_to_client", |b| {
            b.iter(|| {
                black_box(
                    s.server
                        .handle_peer(s.now, s.relay, s.peer, &mut buf, payload),
                )
            })
        });
        g.finish();
    }
}

criterion_group!(benches, relay);

fn main() {
    allocations_per_packet();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
