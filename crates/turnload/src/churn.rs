//! Churn mode: clients that allocate and at once delete (Refresh with lifetime 0) in a
//! loop, to measure how fast a server sets up and tears down allocations. Every cycle is
//! a new client (new socket, and the 401 nonce exchange), as in real churn. Each cycle
//! also gets its own source address in 127.0.0.0/8: servers may hold a deleted 5-tuple
//! for a while (coturn answers 437), and ephemeral ports alone repeat too soon.

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use stunner_turn::{Client, Received, Request, TransportKind};

use crate::exchange;

/// Runs `clients` allocate/delete loops for `duration`; returns completed cycles and
/// the seconds they took.
pub(crate) fn run(
    server: SocketAddr,
    user: &str,
    pass: &str,
    clients: usize,
    duration: Duration,
) -> Result<(u64, f64), String> {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let first_error = Arc::new(std::sync::Mutex::new(None::<String>));
    let start = Instant::now();
    let mut threads = Vec::new();
    for i in 0..clients.max(1) {
        let (stop, done, failed) = (stop.clone(), done.clone(), failed.clone());
        let first_error = first_error.clone();
        let note = move |what: String| {
            if let Ok(mut e) = first_error.lock() {
                e.get_or_insert(what);
            }
        };
        let (user, pass) = (user.to_string(), pass.to_string());
        threads.push(std::thread::spawn(move || -> Result<(), String> {
            let mut seed = 1000 + i as u64 * 1_000_000;
            while !stop.load(Ordering::Relaxed) {
                let n = seed - 1000 - i as u64 * 1_000_000;
                let src =
                    std::net::Ipv4Addr::new(127, 1 + (i % 200) as u8, (n >> 8) as u8, n as u8);
                let s = UdpSocket::bind((src, 0)).map_err(|e| e.to_string())?;
                s.set_read_timeout(Some(Duration::from_secs(2)))
                    .map_err(|e| e.to_string())?;
                seed += 1;
                let mut c = Client::new(&user, &pass, TransportKind::Datagram, seed);
                match exchange(
                    &s,
                    server,
                    &mut c,
                    Request::Allocate {
                        lifetime: Some(600),
                    },
                ) {
                    Ok(Received::Allocated { .. }) => {}
                    other => {
                        note(format!("allocate: {other:?}"));
                        failed.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                }
                match exchange(&s, server, &mut c, Request::Refresh { lifetime: 0 }) {
                    Ok(Received::Refreshed { .. }) => {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    other => {
                        note(format!("refresh: {other:?}"));
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            Ok(())
        }));
    }
    std::thread::sleep(duration);
    stop.store(true, Ordering::Relaxed);
    let elapsed = start.elapsed().as_secs_f64();
    for t in threads {
        t.join()
            .map_err(|_| "churn thread panicked".to_string())??;
    }
    let f = failed.load(Ordering::Relaxed);
    if f > done.load(Ordering::Relaxed) / 10 + 5 {
        let first = first_error
            .lock()
            .ok()
            .and_then(|e| e.clone())
            .unwrap_or_default();
        return Err(format!(
            "{f} allocate/delete cycles failed (first: {first})"
        ));
    }
    Ok((done.load(Ordering::Relaxed), elapsed))
}
