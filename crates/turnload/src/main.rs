//! turnload: drives a TURN server with N allocations, each with a channel to an echo
//! peer that turnload runs itself, and reports delivered datagrams per second, loss,
//! round-trip times and the server's CPU time per relayed datagram (from
//! `/proc/<pid>/stat`). Datagrams can go in bursts of equal size, sent with UDP GSO
//! (`--burst`, `--gso`), as media does. `--churn` measures allocate/delete cycles
//! instead; `--tcp-relay` streams bytes through RFC 6062 TCP allocations over TURN-TCP
//! and reports MiB/s and server CPU per MiB. Traffic goes to the addresses given, which the benchmark keeps on loopback.

mod churn;
mod segments;
mod tcp_relay;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token};
use stunner_turn::{Client, Received, Request, TransportKind};

/// Command line.
#[derive(Debug, Parser)]
#[command(name = "turnload", about)]
struct Args {
    /// TURN server (UDP).
    #[arg(long, default_value = "127.0.0.1:3478")]
    server: SocketAddr,
    /// Username.
    #[arg(long, default_value = "user")]
    user: String,
    /// Password.
    #[arg(long, default_value = "pass")]
    pass: String,
    /// Allocations.
    #[arg(long, default_value_t = 10)]
    allocations: usize,
    /// Payload bytes per datagram (at least 16).
    #[arg(long, default_value_t = 100)]
    size: usize,
    /// Datagrams in flight per allocation (closed loop).
    #[arg(long, default_value_t = 8)]
    window: usize,
    /// Paced mode: datagrams per second over all allocations (0 = closed loop).
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Seconds of measured traffic.
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Server PID, for CPU time per datagram.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Label printed with each figure.
    #[arg(long, default_value = "server")]
    label: String,
    /// Datagrams per burst per allocation (closed loop); at most `window`.
    #[arg(long, default_value_t = 1)]
    burst: usize,
    /// Send each burst with one GSO call (UDP_SEGMENT), client and echo peer.
    #[arg(long)]
    gso: bool,
    /// Churn mode: `allocations` clients allocate and delete in a loop for `duration`;
    /// reports cycles per second and server CPU per cycle.
    #[arg(long)]
    churn: bool,
    /// TCP-relay mode (RFC 6062): `allocations` TCP allocations over TURN-TCP to the
    /// same server address, each Connect-ed to turnload's TCP echo peer and streaming
    /// `size`-byte writes for `duration`; reports MiB/s echoed and server CPU per MiB.
    #[arg(long, conflicts_with = "churn")]
    tcp_relay: bool,
    /// Address the client sockets bind to.
    #[arg(long, default_value = "127.0.0.1")]
    bind: std::net::IpAddr,
    /// Address the echo peer binds to.
    #[arg(long, default_value = "127.0.0.1")]
    peer_ip: std::net::IpAddr,
    /// Network namespace (a name under /var/run/netns) to make the echo peer's socket
    /// in, for topologies where the peer sits behind the server (the offload benchmark).
    #[arg(long)]
    peer_netns: Option<String>,
    /// Also report the busy time of this core (`/proc/stat`: user, nice, system, irq,
    /// softirq, steal) per relayed datagram: the server's work wherever it runs, kernel
    /// relaying in softirq included, when the server and its interfaces' receive
    /// processing (RPS) are pinned there and nothing else is.
    #[arg(long)]
    server_core: Option<usize>,
}

const PEER: Token = Token(0);

/// Resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// CPU time (user + system) of a process, in seconds.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

struct Alloc {
    sock: UdpSocket,
    client: Client,
    in_flight: usize,
}

pub(crate) fn exchange(
    sock: &std::net::UdpSocket,
    server: SocketAddr,
    client: &mut Client,
    req: Request,
) -> Result<Received, String> {
    let mut bytes = client.request(req);
    let mut buf = [0u8; 2048];
    for _ in 0..4 {
        sock.send_to(&bytes, server).map_err(|e| e.to_string())?;
        let (n, _) = sock
            .recv_from(&mut buf)
            .map_err(|e| format!("no answer: {e}"))?;
        match client.receive(&buf[..n]) {
            Received::Retry(b) => bytes = b,
            other => return Ok(other),
        }
    }
    Err("no final answer".into())
}

/// The echo peer: everything back to its sender, a coalesced burst as one GSO send.
fn echo(peer: &UdpSocket, buf: &mut [u8], gso: bool, counts: &mut HashMap<SocketAddr, u64>) {
    while let Ok((n, Some(from), seg)) = segments::recv(peer, buf) {
        *counts.entry(from).or_insert(0) += n.div_ceil(seg) as u64;
        if gso || seg >= n {
            let _ = segments::send(peer, from, &buf[..n], seg);
        } else {
            for c in buf[..n].chunks(seg) {
                let _ = peer.send_to(c, from);
            }
        }
    }
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)] as f64 / 1000.0
}

fn main() -> ExitCode {
    let a = Args::parse();
    match run(&a) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("turnload: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(a: &Args) -> Result<(), String> {
    if a.churn {
        return run_churn(a);
    }
    if a.tcp_relay {
        return run_tcp_relay(a);
    }
    // The echo peer.
    let peer_std = peer_socket(a)?;
    let peer_addr = peer_std.local_addr().map_err(|e| e.to_string())?;
    peer_std.set_nonblocking(true).map_err(|e| e.to_string())?;
    segments::enable_gro(&peer_std);
    let rss0 = a.server_pid.and_then(rss_kib);
    let setup = Instant::now();
    let allocs = allocate(a, peer_addr)?;
    let setup_secs = setup.elapsed().as_secs_f64();
    let rss1 = a.server_pid.and_then(rss_kib);
    let mut load = Load::new(a, UdpSocket::from_std(peer_std), allocs)?;
    let cpu0 = a.server_pid.and_then(cpu_seconds);
    let m0 = a.server_core.and_then(core_busy_seconds);
    let elapsed = load.measure(a)?;
    let m1 = a.server_core.and_then(core_busy_seconds);
    let received_in_window = load.received;
    load.drain();
    let cpu1 = a.server_pid.and_then(cpu_seconds);
    let l = &a.label;
    println!(
        "{l} allocations={} setup_allocs_per_s={:.0}",
        a.allocations,
        a.allocations as f64 / setup_secs.max(1e-9)
    );
    if let (Some(r0), Some(r1)) = (rss0, rss1) {
        println!(
            "{l} rss_kib_per_allocation={:.2}",
            r1.saturating_sub(r0) as f64 / a.allocations.max(1) as f64
        );
    }
    load.report(l, elapsed, cpu0.zip(cpu1));
    if let (Some(b0), Some(b1)) = (m0, m1) {
        // Each round trip is two relayed datagrams.
        let relayed = 2 * received_in_window;
        println!(
            "{l} core_cpu_us_per_datagram={:.3}",
            1e6 * (b1 - b0) / relayed.max(1) as f64
        );
    }
    Ok(())
}

/// The echo peer's socket: at `--peer-ip`, inside `--peer-netns` if given (a socket
/// stays in the namespace it was made in).
fn peer_socket(a: &Args) -> Result<std::net::UdpSocket, String> {
    let bind = SocketAddr::new(a.peer_ip, 0);
    let Some(ns) = a.peer_netns.clone() else {
        return std::net::UdpSocket::bind(bind).map_err(|e| e.to_string());
    };
    let f = std::fs::File::open(format!("/var/run/netns/{ns}"))
        .map_err(|e| format!("netns {ns}: {e}"))?;
    std::thread::spawn(move || {
        use std::os::fd::AsFd;
        nix::sched::setns(f.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(|e| format!("setns {ns}: {e}"))?;
        std::net::UdpSocket::bind(bind).map_err(|e| format!("{bind} in {ns}: {e}"))
    })
    .join()
    .map_err(|_| "the netns thread panicked".to_string())?
}

/// Busy CPU seconds of one core (`/proc/stat`: user, nice, system, irq, softirq,
/// steal).
fn core_busy_seconds(core: usize) -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let name = format!("cpu{core}");
    let f: Vec<f64> = stat
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name.as_str()))?
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let busy = [0, 1, 2, 5, 6, 7]
        .iter()
        .filter_map(|&i| f.get(i))
        .sum::<f64>();
    Some(busy / 100.0)
}

/// `--churn`: allocate/delete cycles per second and server CPU per cycle.
fn run_churn(a: &Args) -> Result<(), String> {
    let cpu0 = a.server_pid.and_then(cpu_seconds);
    let (cycles, secs) = churn::run(
        a.server,
        &a.user,
        &a.pass,
        a.allocations,
        Duration::from_secs_f64(a.duration),
    )?;
    let cpu1 = a.server_pid.and_then(cpu_seconds);
    let l = &a.label;
    println!(
        "{l} churn_allocs_per_s={:.0} cycles={cycles}",
        cycles as f64 / secs.max(1e-9)
    );
    if let (Some(c0), Some(c1)) = (cpu0, cpu1) {
        println!(
            "{l} cpu_us_per_allocation={:.3}",
            1e6 * (c1 - c0) / cycles.max(1) as f64
        );
    }
    Ok(())
}

/// `--tcp-relay`: MiB/s through TCP allocations and server CPU per MiB relayed.
fn run_tcp_relay(a: &Args) -> Result<(), String> {
    let f = tcp_relay::run(
        a.server,
        &a.user,
        &a.pass,
        a.allocations,
        a.size.max(1),
        Duration::from_secs_f64(a.duration),
        || a.server_pid.and_then(cpu_seconds),
    )?;
    let l = &a.label;
    let mib = f.echoed as f64 / (1024.0 * 1024.0);
    println!(
        "{l} tcp_allocations={} tcp_echoed_bytes={} tcp_mib_per_s={:.1}",
        a.allocations,
        f.echoed,
        mib / f.secs.max(1e-9)
    );
    if let Some((c0, c1)) = f.cpu {
        // Each echoed byte crossed the relay twice: client to peer and back.
        println!(
            "{l} server_cpu_s={:.3} cpu_us_per_mib={:.1}",
            c1 - c0,
            1e6 * (c1 - c0) / (2.0 * mib).max(1e-9)
        );
    }
    Ok(())
}

/// `a.allocations` allocations, each with channel 0x4000 bound to the echo peer.
fn allocate(a: &Args, peer_addr: SocketAddr) -> Result<Vec<Alloc>, String> {
    let mut allocs = Vec::new();
    for i in 0..a.allocations {
        let s = std::net::UdpSocket::bind(SocketAddr::new(a.bind, 0)).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(Duration::from_secs(2)))
            .map_err(|e| e.to_string())?;
        let mut c = Client::new(&a.user, &a.pass, TransportKind::Datagram, 1 + i as u64);
        let allocate = Request::Allocate {
            lifetime: Some(600),
        };
        match exchange(&s, a.server, &mut c, allocate)? {
            Received::Allocated { .. } => {}
            other => return Err(format!("allocation {i} failed: {other:?}")),
        }
        let bind = Request::ChannelBind {
            channel: 0x4000,
            peer: peer_addr,
        };
        match exchange(&s, a.server, &mut c, bind)? {
            Received::ChannelBound => {}
            other => return Err(format!("channel bind {i} failed: {other:?}")),
        }
        s.set_nonblocking(true).map_err(|e| e.to_string())?;
        segments::enable_gro(&s);
        allocs.push(Alloc {
            sock: UdpSocket::from_std(s),
            client: c,
            in_flight: 0,
        });
    }
    Ok(allocs)
}

/// Sends bursts: `n` equal ChannelData frames back to back, each stamped with its send
/// time, as one GSO call or one datagram at a time.
struct Sender {
    origin: Instant,
    payload: Vec<u8>,
    frame_buf: Vec<u8>,
    gso: bool,
    server: SocketAddr,
}

impl Sender {
    fn send(&mut self, al: &mut Alloc, now: Instant, n: usize) -> usize {
        let us = now.duration_since(self.origin).as_micros() as u64;
        self.payload[..8].copy_from_slice(&us.to_be_bytes());
        let f = al.client.channel_data(0x4000, &self.payload);
        self.frame_buf.clear();
        for _ in 0..n {
            self.frame_buf.extend_from_slice(&f);
        }
        if self.gso && n > 1 {
            match segments::send(&al.sock, self.server, &self.frame_buf, f.len()) {
                Ok(_) => n,
                Err(_) => 0,
            }
        } else {
            self.frame_buf
                .chunks(f.len())
                .filter(|c| al.sock.send_to(c, self.server).is_ok())
                .count()
        }
    }
}

/// One measured run: the allocations, the echo peer, and what came back.
struct Load {
    poll: Poll,
    events: Events,
    ready: Vec<Token>,
    peer: UdpSocket,
    allocs: Vec<Alloc>,
    sender: Sender,
    buf: Vec<u8>,
    peer_echoes: HashMap<SocketAddr, u64>,
    burst: usize,
    window: usize,
    paced: bool,
    end: Instant,
    rtts: Vec<u64>,
    sent: u64,
    received: u64,
}

impl Load {
    fn new(a: &Args, mut peer: UdpSocket, mut allocs: Vec<Alloc>) -> Result<Self, String> {
        let poll = Poll::new().map_err(|e| e.to_string())?;
        poll.registry()
            .register(&mut peer, PEER, Interest::READABLE)
            .map_err(|e| e.to_string())?;
        for (i, al) in allocs.iter_mut().enumerate() {
            poll.registry()
                .register(&mut al.sock, Token(i + 1), Interest::READABLE)
                .map_err(|e| e.to_string())?;
        }
        let size = a.size.max(16);
        let burst = a.burst.clamp(1, a.window.max(1));
        Ok(Self {
            poll,
            events: Events::with_capacity(1024),
            ready: Vec::with_capacity(1024),
            peer,
            allocs,
            sender: Sender {
                origin: Instant::now(),
                payload: vec![0x5au8; size],
                frame_buf: Vec::with_capacity(burst * (4 + size + 4)),
                gso: a.gso,
                server: a.server,
            },
            buf: vec![0u8; 65536],
            peer_echoes: HashMap::new(),
            burst,
            window: a.window.max(1),
            paced: a.rate > 0,
            end: Instant::now(),
            rtts: Vec::with_capacity(1 << 20),
            sent: 0,
            received: 0,
        })
    }

    /// Closed loop: tops allocation `i` up to its window, in bursts, until the end.
    fn fill_window(&mut self, i: usize) {
        let al = &mut self.allocs[i];
        while !self.paced && al.in_flight + self.burst <= self.window && Instant::now() < self.end {
            let k = self.sender.send(al, Instant::now(), self.burst);
            if k == 0 {
                break;
            }
            al.in_flight += k;
            self.sent += k as u64;
        }
    }

    /// Reads what came back on allocation `i`. While `measuring`: an RTT per echoed frame
    /// and a refill of its window; in the drain after it, only the count.
    fn read_alloc(&mut self, i: usize, measuring: bool) {
        while let Ok((n, _, seg)) = segments::recv(&self.allocs[i].sock, &mut self.buf) {
            let mut off = 0;
            while off < n {
                let l = seg.min(n - off);
                let frame = &self.buf[off..off + l];
                off += l;
                let Received::ChannelData { range, .. } = self.allocs[i].client.receive(frame)
                else {
                    continue;
                };
                if !measuring {
                    self.received += 1;
                } else if range.len() >= 8 {
                    let mut t = [0u8; 8];
                    t.copy_from_slice(&frame[range.start..range.start + 8]);
                    let sent_us = u64::from_be_bytes(t);
                    let now_us = self.sender.origin.elapsed().as_micros() as u64;
                    self.rtts.push(now_us.saturating_sub(sent_us));
                    self.received += 1;
                    let al = &mut self.allocs[i];
                    al.in_flight = al.in_flight.saturating_sub(1);
                }
            }
            if measuring {
                self.fill_window(i);
            }
        }
    }

    /// Serves what the last poll found ready: the echo peer, and the allocations.
    fn dispatch(&mut self, measuring: bool) {
        self.ready.clear();
        self.ready.extend(self.events.iter().map(|ev| ev.token()));
        for k in 0..self.ready.len() {
            let t = self.ready[k];
            if t == PEER {
                echo(
                    &self.peer,
                    &mut self.buf,
                    self.sender.gso,
                    &mut self.peer_echoes,
                );
            } else {
                self.read_alloc(t.0 - 1, measuring);
            }
        }
    }

    /// The measured traffic for `a.duration`, closed loop or paced; returns its seconds.
    fn measure(&mut self, a: &Args) -> Result<f64, String> {
        let start = Instant::now();
        self.end = start + Duration::from_secs_f64(a.duration);
        let interval = if self.paced {
            Duration::from_secs_f64(1.0 / a.rate as f64)
        } else {
            Duration::ZERO
        };
        let mut next_send = start;
        let mut rr = 0usize;
        for i in 0..self.allocs.len() {
            self.fill_window(i);
        }
        loop {
            let now = Instant::now();
            if now >= self.end {
                break;
            }
            if self.paced {
                while next_send <= now && !self.allocs.is_empty() {
                    let n = self.allocs.len();
                    let al = &mut self.allocs[rr % n];
                    rr += 1;
                    self.sent += self.sender.send(al, now, 1) as u64;
                    next_send += interval;
                }
            }
            // epoll waits in whole milliseconds (mio rounds up): a paced sender that slept
            // until its next slot would wake up to 1 ms late and then send the missed slots
            // as one burst, adding its own queueing to the RTTs it measures. Below a
            // millisecond it polls without sleeping instead (the generator has a core to
            // itself in the benchmark).
            let timeout = if self.paced {
                let t = next_send.saturating_duration_since(Instant::now());
                if t < Duration::from_millis(1) {
                    Duration::ZERO
                } else {
                    t
                }
            } else {
                Duration::from_millis(100)
            };
            let left = self.end.saturating_duration_since(Instant::now());
            self.poll
                .poll(&mut self.events, Some(timeout.min(left)))
                .map_err(|e| e.to_string())?;
            self.dispatch(true);
        }
        Ok(start.elapsed().as_secs_f64())
    }

    /// Lets stragglers arrive for 300 ms before loss is counted (no new sends, no RTTs).
    fn drain(&mut self) {
        let until = Instant::now() + Duration::from_millis(300);
        while Instant::now() < until {
            let _ = self
                .poll
                .poll(&mut self.events, Some(Duration::from_millis(50)));
            self.dispatch(false);
        }
    }

    /// Prints loss, rate, RTTs and, with `cpu` (server CPU seconds before and after),
    /// CPU per relayed datagram.
    fn report(&mut self, l: &str, elapsed: f64, cpu: Option<(f64, f64)>) {
        let (sent, received) = (self.sent, self.received);
        self.rtts.sort_unstable();
        println!(
            "{l} sent={sent} received={received} loss_pct={:.3}",
            100.0 * (sent.saturating_sub(received)) as f64 / sent.max(1) as f64
        );
        println!("{l} delivered_per_s={:.0}", received as f64 / elapsed);
        println!(
            "{l} rtt_p50_ms={:.3} rtt_p99_ms={:.3}",
            percentile(&self.rtts, 0.5),
            percentile(&self.rtts, 0.99)
        );
        if let Some((c0, c1)) = cpu {
            // Each round trip is two relayed datagrams: client to peer and back.
            let relayed = 2 * received;
            println!(
                "{l} server_cpu_s={:.3} cpu_us_per_datagram={:.3}",
                c1 - c0,
                1e6 * (c1 - c0) / relayed.max(1) as f64
            );
        }
    }
}
