//! TCP-relay mode (RFC 6062): each allocation is a TURN-TCP control connection with a
//! TCP relay, Connect to turnload's own TCP echo peer, and a data connection bound to it
//! (ConnectionBind). A writer streams a position-derived byte pattern as fast as the
//! relay takes it (kernel buffers and the server's back-pressure bound what is in
//! flight); a reader checks every byte that comes back. Reports MiB/s delivered back and
//! the server's CPU per MiB relayed (each echoed byte crosses the relay twice).

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use stunner_turn::{Client, Received, Request, TransportKind, frame_len};

/// The stream's bytes repeat with a period (251) prime to every chunk size, so a lost,
/// repeated or reordered chunk shows. `ring` holds the pattern from offset 0 for
/// `PERIOD + len` bytes: the `len` bytes at stream offset `off` are one slice of it,
/// written and compared without per-byte work on the generator's core.
const PERIOD: u64 = 251;

fn ring(len: usize) -> Vec<u8> {
    (0..PERIOD as usize + len)
        .map(|i| (i % PERIOD as usize) as u8)
        .collect()
}

fn at(ring: &[u8], off: u64, len: usize) -> &[u8] {
    let start = (off % PERIOD) as usize;
    &ring[start..start + len]
}

/// What a run measured.
pub(crate) struct Figures {
    /// Bytes echoed back to the clients inside the measured window.
    pub(crate) echoed: u64,
    /// Length of the window, seconds.
    pub(crate) secs: f64,
    /// Server CPU seconds at the window's start and end, when known.
    pub(crate) cpu: Option<(f64, f64)>,
}

/// A request on a stream and its answer, following the 401 dance.
fn exchange(
    s: &mut TcpStream,
    pending: &mut Vec<u8>,
    client: &mut Client,
    req: Request,
) -> Result<Received, String> {
    let mut bytes = client.request(req);
    for _ in 0..4 {
        s.write_all(&bytes).map_err(|e| e.to_string())?;
        let frame = read_frame(s, pending)?;
        match client.receive(&frame) {
            Received::Retry(b) => bytes = b,
            other => return Ok(other),
        }
    }
    Err("no final answer".into())
}

fn read_frame(s: &mut TcpStream, pending: &mut Vec<u8>) -> Result<Vec<u8>, String> {
    let mut buf = [0u8; 4096];
    loop {
        match frame_len(pending) {
            Ok(Some(n)) if n <= pending.len() => return Ok(pending.drain(..n).collect()),
            Ok(_) => {}
            Err(_) => return Err("the server sent neither STUN nor ChannelData".into()),
        }
        match s.read(&mut buf) {
            Ok(0) => return Err("the server closed the connection".into()),
            Ok(n) => pending.extend_from_slice(&buf[..n]),
            Err(e) => return Err(format!("no answer: {e}")),
        }
    }
}

/// One TCP allocation with its bound data connection; the control connection is
/// returned too, as closing it ends the allocation.
fn open_pair(
    server: SocketAddr,
    user: &str,
    pass: &str,
    seed: u64,
    peer: SocketAddr,
) -> Result<(TcpStream, TcpStream, Vec<u8>), String> {
    let connect = || -> Result<TcpStream, String> {
        let s = TcpStream::connect_timeout(&server, Duration::from_secs(2))
            .map_err(|e| format!("{server}: {e}"))?;
        s.set_nodelay(true).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(Duration::from_secs(2)))
            .map_err(|e| e.to_string())?;
        Ok(s)
    };
    let mut c = Client::new(user, pass, TransportKind::Stream, seed);
    let (mut control, mut pending) = (connect()?, Vec::new());
    let alloc = Request::AllocateTcp {
        lifetime: Some(600),
    };
    match exchange(&mut control, &mut pending, &mut c, alloc)? {
        Received::Allocated { .. } => {}
        other => return Err(format!("TCP allocation failed: {other:?}")),
    }
    let id = match exchange(
        &mut control,
        &mut pending,
        &mut c,
        Request::Connect { peer },
    )? {
        Received::Connected { id } => id,
        other => return Err(format!("connect to {peer} failed: {other:?}")),
    };
    let (mut data, mut early) = (connect()?, Vec::new());
    match exchange(
        &mut data,
        &mut early,
        &mut c,
        Request::ConnectionBind { id },
    )? {
        Received::ConnectionBound => {}
        other => return Err(format!("connection bind failed: {other:?}")),
    }
    Ok((control, data, early))
}

/// The echo peer: every connection's bytes back to it.
fn echo_peer() -> Result<SocketAddr, String> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let addr = l.local_addr().map_err(|e| e.to_string())?;
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            std::thread::spawn(move || {
                if let Ok(mut r) = s.try_clone() {
                    let _ = std::io::copy(&mut r, &mut s);
                }
            });
        }
    });
    Ok(addr)
}

/// Runs `allocations` pairs, writing `chunk`-byte writes, for `duration` after a short
/// warm-up; `cpu` reads the server's CPU seconds.
pub(crate) fn run(
    server: SocketAddr,
    user: &str,
    pass: &str,
    allocations: usize,
    chunk: usize,
    duration: Duration,
    cpu: impl Fn() -> Option<f64>,
) -> Result<Figures, String> {
    let peer = echo_peer()?;
    let stop = Arc::new(AtomicBool::new(false));
    let echoed = Arc::new(AtomicU64::new(0));
    let corrupt = Arc::new(AtomicBool::new(false));
    let mut controls = Vec::new();
    let mut datas = Vec::new();
    let mut threads = Vec::new();
    for i in 0..allocations.max(1) {
        let (control, data, early) = open_pair(server, user, pass, 1 + i as u64, peer)?;
        controls.push(control);
        datas.push(data.try_clone().map_err(|e| e.to_string())?);
        let mut w = data.try_clone().map_err(|e| e.to_string())?;
        let stop_w = stop.clone();
        threads.push(std::thread::spawn(move || {
            let ring = ring(chunk);
            let mut off = 0u64;
            while !stop_w.load(Ordering::Relaxed) {
                if w.write_all(at(&ring, off, chunk)).is_err() {
                    return;
                }
                off += chunk as u64;
            }
        }));
        let mut r = data;
        let (stop_r, echoed, corrupt) = (stop.clone(), echoed.clone(), corrupt.clone());
        threads.push(std::thread::spawn(move || {
            let _ = r.set_read_timeout(Some(Duration::from_millis(100)));
            let mut buf = vec![0u8; 65536];
            let ring = ring(buf.len().max(early.len()));
            let mut off = 0u64;
            let check = |bytes: &[u8], off: &mut u64| {
                if bytes != at(&ring, *off, bytes.len()) {
                    corrupt.store(true, Ordering::Relaxed);
                }
                *off += bytes.len() as u64;
                echoed.fetch_add(bytes.len() as u64, Ordering::Relaxed);
            };
            check(&early, &mut off);
            while !stop_r.load(Ordering::Relaxed) {
                match r.read(&mut buf) {
                    Ok(0) => return,
                    Ok(n) => check(&buf[..n], &mut off),
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                    Err(_) => return,
                }
            }
        }));
    }
    std::thread::sleep(Duration::from_millis(300));
    let (b0, c0, t0) = (echoed.load(Ordering::Relaxed), cpu(), Instant::now());
    std::thread::sleep(duration);
    let (b1, c1, secs) = (
        echoed.load(Ordering::Relaxed),
        cpu(),
        t0.elapsed().as_secs_f64(),
    );
    stop.store(true, Ordering::Relaxed);
    // Shutting the data connections unblocks the writers; closing the control
    // connections ends the allocations.
    for d in &datas {
        let _ = d.shutdown(std::net::Shutdown::Both);
    }
    drop(controls);
    for t in threads {
        let _ = t.join();
    }
    if corrupt.load(Ordering::Relaxed) {
        return Err("bytes came back altered through the TCP relay".into());
    }
    if b1 == b0 {
        return Err("no bytes came back through the TCP relay".into());
    }
    Ok(Figures {
        echoed: b1 - b0,
        secs,
        cpu: c0.zip(c1),
    })
}
