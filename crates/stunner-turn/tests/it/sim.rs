//! The virtual network: one server, its relay sockets, clients and peers, and a clock.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use stunner_config::{Endpoint, StunnerConfig};
use stunner_turn::*;

pub const SERVER: &str = "10.0.0.1:3478";
pub const RELAY_IP: &str = "10.0.0.1";
pub const UNIX_START: i64 = 1_700_000_000;

pub fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

pub fn static_config(policy: &[&str]) -> ServerConfig {
    let eps: Vec<Endpoint> = policy.iter().map(|e| e.parse().unwrap()).collect();
    ServerConfig {
        realm: "stunner.l7mp.io".into(),
        credentials: Credentials::Static {
            username: "user".into(),
            password: "pass".into(),
        },
        relay_ip: RELAY_IP.parse().unwrap(),
        alternate_relay_ip: None,
        policy: PeerPolicy::from_endpoints("cluster", &eps),
        user_quota: 0,
        transport: TransportKind::Datagram,
        nonce_lifetime: Duration::from_secs(3600),
    }
}

pub struct Sim {
    pub now: Instant,
    pub server: Server,
    pub next_port: u16,
    /// When set, relay sockets cannot be opened.
    pub no_ports: bool,
    /// When set, the IPv6 relay socket of a dual allocation cannot be opened.
    pub no_v6_ports: bool,
    /// When set, OpenRelay requests are held instead of answered.
    pub hold_relays: bool,
    pub held: Vec<RelayRequest>,
    pub opened: Vec<RelayRequest>,
    pub closed: Vec<SocketAddr>,
    pub to_clients: HashMap<SocketAddr, VecDeque<Vec<u8>>>,
    /// (peer, relayed address it came from, payload)
    pub to_peers: Vec<(SocketAddr, SocketAddr, Vec<u8>)>,
    pub events: Vec<Event>,
    /// Held relay ports by reservation token (the IO layer's job).
    pub reservations: HashMap<u64, u16>,
    /// RFC 6062: connects asked for (id, relay, peer), unanswered; bound (id, client);
    /// closed connection ids.
    pub connects: Vec<(u32, SocketAddr, SocketAddr)>,
    pub bound: Vec<(u32, FiveTuple)>,
    pub closed_connections: Vec<u32>,
    /// Offload reports: (up, channel).
    pub offloads: Vec<(bool, OffloadChannel)>,
}

impl Sim {
    pub fn new(config: ServerConfig) -> Self {
        let now = Instant::now();
        Self {
            now,
            server: Server::new(config, now, UNIX_START, [42; 32]),
            next_port: 50000,
            no_ports: false,
            no_v6_ports: false,
            hold_relays: false,
            held: Vec::new(),
            opened: Vec::new(),
            closed: Vec::new(),
            to_clients: HashMap::new(),
            to_peers: Vec::new(),
            events: Vec::new(),
            reservations: HashMap::new(),
            connects: Vec::new(),
            bound: Vec::new(),
            closed_connections: Vec::new(),
            offloads: Vec::new(),
        }
    }

    pub fn open_cluster() -> Self {
        Self::new(static_config(&["0.0.0.0/0"]))
    }

    pub fn drain(&mut self) {
        while let Some(o) = self.server.poll_output() {
            match o {
                Output::Transmit(t) => match t.from {
                    Source::Listener(_) => {
                        self.to_clients.entry(t.to).or_default().push_back(t.data)
                    }
                    Source::Relay(r) => self.to_peers.push((t.to, r, t.data)),
                },
                Output::OpenRelay(req) => {
                    if self.hold_relays {
                        self.held.push(req);
                        continue;
                    }
                    self.opened.push(req.clone());
                    let port = match req.reservation {
                        Some(t) => self.reservations.remove(&t),
                        None if self.no_ports => None,
                        None => {
                            self.next_port += 1;
                            if req.even_port && self.next_port % 2 == 1 {
                                self.next_port += 1;
                            }
                            let p = self.next_port;
                            if let Some(t) = req.reserve {
                                self.next_port += 1;
                                self.reservations.insert(t, p + 1);
                            }
                            Some(p)
                        }
                    };
                    let port6 = req.additional.filter(|_| !self.no_v6_ports).map(|_| {
                        self.next_port += 1;
                        self.next_port
                    });
                    self.server
                        .handle_relays_opened(self.now, req.token, port, port6);
                }
                Output::CloseRelay(a) => self.closed.push(a),
                Output::ConnectPeer { id, relay, peer } => self.connects.push((id, relay, peer)),
                Output::BindConnection { id, client } => self.bound.push((id, client)),
                Output::CloseConnection(id) => self.closed_connections.push(id),
                Output::OffloadUp(c) => self.offloads.push((true, c)),
                Output::OffloadDown(c) => self.offloads.push((false, c)),
                Output::Event(e) => self.events.push(e),
            }
        }
    }

    pub fn client_sends(&mut self, ft: FiveTuple, bytes: &[u8]) {
        if let Some(f) = self.server.handle_client(self.now, ft, bytes) {
            let Source::Relay(r) = f.from else {
                panic!("client traffic forwarded from a listener")
            };
            self.to_peers.push((f.to, r, bytes[f.range].to_vec()));
        }
        self.drain();
    }

    pub fn peer_sends(&mut self, relay: SocketAddr, peer: SocketAddr, payload: &[u8]) {
        let mut buf = vec![0xAA; CHANNEL_HEADROOM + payload.len() + CHANNEL_TAILROOM];
        buf[CHANNEL_HEADROOM..CHANNEL_HEADROOM + payload.len()].copy_from_slice(payload);
        if let Some(f) = self
            .server
            .handle_peer(self.now, relay, peer, &mut buf, payload.len())
        {
            self.to_clients
                .entry(f.to)
                .or_default()
                .push_back(buf[f.range].to_vec());
        }
        self.drain();
    }

    pub fn advance(&mut self, d: Duration) {
        self.now += d;
        self.server.handle_timeout(self.now);
        self.drain();
    }

    pub fn take_client(&mut self, client: SocketAddr) -> Option<Vec<u8>> {
        self.to_clients.get_mut(&client)?.pop_front()
    }

    pub fn peer_got(&mut self, peer: SocketAddr) -> Vec<(SocketAddr, Vec<u8>)> {
        let (mine, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.to_peers)
            .into_iter()
            .partition(|(p, ..)| *p == peer);
        self.to_peers = rest;
        mine.into_iter().map(|(_, r, d)| (r, d)).collect()
    }
}

pub struct TestClient {
    pub client: Client,
    pub ft: FiveTuple,
}

impl TestClient {
    pub fn new(client_addr: &str, user: &str, pass: &str) -> Self {
        Self {
            client: Client::new(user, pass, TransportKind::Datagram, 7),
            ft: FiveTuple {
                client: addr(client_addr),
                server: addr(SERVER),
            },
        }
    }

    pub fn user(client_addr: &str) -> Self {
        Self::new(client_addr, "user", "pass")
    }

    /// Sends a request, follows the 401/438 dance, returns the final answer.
    pub fn exchange(&mut self, sim: &mut Sim, req: Request) -> Received {
        let mut bytes = self.client.request(req);
        for _ in 0..4 {
            sim.client_sends(self.ft, &bytes);
            let Some(resp) = sim.take_client(self.ft.client) else {
                return Received::Ignored;
            };
            match self.client.receive(&resp) {
                Received::Retry(b) => bytes = b,
                other => return other,
            }
        }
        panic!("no answer after retries")
    }

    pub fn allocate(&mut self, sim: &mut Sim) -> SocketAddr {
        match self.exchange(sim, Request::Allocate { lifetime: None }) {
            Received::Allocated { relayed, .. } => relayed,
            other => panic!("allocate failed: {other:?}"),
        }
    }

    pub fn expect_error(&mut self, sim: &mut Sim, req: Request) -> u16 {
        match self.exchange(sim, req) {
            Received::Failed { code, .. } => code,
            other => panic!("expected an error, got {other:?}"),
        }
    }

    /// The next thing the server sent this client, as the client reads it.
    pub fn next(&mut self, sim: &mut Sim) -> Option<(Received, Vec<u8>)> {
        let b = sim.take_client(self.ft.client)?;
        Some((self.client.receive(&b), b))
    }
}

pub fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

pub fn config_from_yaml(yaml: &str, listener: &str) -> ServerConfig {
    let c = StunnerConfig::from_str_with_env(yaml, &|_: &str| None).unwrap();
    ServerConfig::for_listener(&c, listener).unwrap()
}
