//! Batched UDP I/O on `quinn-udp`: `recvmmsg` into a ring of reused buffers, with UDP
//! GRO (`UDP_GRO`: one received buffer may hold many datagrams of one flow, all
//! `segment` bytes but the last), and sends where consecutive equal-size datagrams to one
//! destination leave as one message the kernel splits (UDP GSO, `UDP_SEGMENT`). No heap
//! allocation per datagram: buffers and queues keep their capacity.
//!
//! Why quinn-udp (issue 15): it makes the same syscalls with no `unsafe` of ours, and it
//! is maintained for quinn. It was measured against our own recvmmsg/sendmmsg/GSO code
//! (19 `unsafe` blocks), built side by side behind a feature flag (commit 898488a's
//! parent plus that flag; stunnerd on one core, turnload on the other, median of 5
//! alternated runs, CPU µs per relayed datagram, ours vs quinn-udp 0.6.3): 100 B closed
//! 1.658 vs 1.616 (0.975×), 1200 B closed 1.927 vs 1.872 (0.971×), 1200 B GSO bursts of 8
//! 0.465 vs 0.468 (1.006×), paced 40k pps 4.425 vs 4.575 (1.034×). All are within the 5 %
//! bound, so it was adopted. `bench/ab.sh cd4b489 898488a` (before and after the switch)
//! confirmed it: 0.980×, 1.010×, 1.015×, 1.022× on those cases, and 1.031× CPU per
//! allocation under churn.
//! quinn-udp sends one `sendmsg` per run, not one `sendmmsg` per batch; on these loads
//! that costs nothing measurable (GSO runs already merge what shares a destination).
//!
//! Only `quinn_udp::UdpSocketState`'s capability probe is shared: it is made once on a
//! throwaway loopback socket, because `UdpSocketState::new` also sets options on the
//! socket it is given (don't-fragment among them), which a TURN relay must not impose on
//! its own sockets. GRO is enabled here per socket instead.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::sync::OnceLock;

/// Datagrams per `recvmmsg` call (quinn-udp's batch on Linux).
pub(crate) const BATCH: usize = 32;

/// Most segments the kernel takes in one GSO send (UDP_MAX_SEGMENTS).
const MAX_SEGMENTS: usize = 64;
/// Most payload bytes in one GSO send (an IP datagram's limit, with headers).
const MAX_GSO_BYTES: usize = 65_000;

/// GSO is used until a send proves the kernel or device cannot do it.
static GSO_OFF: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Turns GSO off for the process (`STUNNERD_NO_GSO=1`, benchmarks, or after a failure).
pub(crate) fn disable_gso() {
    GSO_OFF.store(true, std::sync::atomic::Ordering::Relaxed);
}

fn gso_on() -> bool {
    !GSO_OFF.load(std::sync::atomic::Ordering::Relaxed)
}

/// Asks the kernel to coalesce same-flow datagrams on `sock` (UDP GRO, Linux 5.0+). False
/// where unsupported; receiving then works datagram by datagram as before.
pub(crate) fn enable_gro(sock: &impl AsFd) -> bool {
    if std::env::var_os("STUNNERD_NO_GRO").is_some() {
        return false;
    }
    nix::sys::socket::setsockopt(sock, nix::sys::socket::sockopt::UdpGroSegment, &true).is_ok()
}

/// quinn-udp's view of what the kernel supports, probed once (see the module doc).
fn state() -> io::Result<&'static quinn_udp::UdpSocketState> {
    static STATE: OnceLock<Result<quinn_udp::UdpSocketState, String>> = OnceLock::new();
    STATE
        .get_or_init(|| {
            let probe = std::net::UdpSocket::bind("127.0.0.1:0")
                .or_else(|_| std::net::UdpSocket::bind("[::1]:0"))
                .map_err(|e| format!("no loopback UDP socket to probe UDP offloads: {e}"))?;
            quinn_udp::UdpSocketState::new((&probe).into()).map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| io::Error::other(e.clone()))
}

/// Receive buffers for one `recvmmsg` call.
pub(crate) struct RecvBatch {
    bufs: Vec<Vec<u8>>,
    metas: Vec<quinn_udp::RecvMeta>,
    offset: usize,
    size: usize,
}

impl RecvBatch {
    /// `BATCH` buffers of `offset + size + tail` bytes; datagrams land at `offset`.
    pub(crate) fn new(offset: usize, size: usize, tail: usize) -> Self {
        Self {
            bufs: (0..BATCH)
                .map(|_| vec![0u8; offset + size + tail])
                .collect(),
            metas: vec![quinn_udp::RecvMeta::default(); BATCH],
            offset,
            size,
        }
    }

    /// Receives up to `BATCH` datagrams from a non-blocking socket; `Ok(0)` means none
    /// was waiting.
    pub(crate) fn recv(&mut self, sock: &impl AsFd) -> io::Result<usize> {
        let (offset, size) = (self.offset, self.size);
        let mut slices: [io::IoSliceMut<'_>; BATCH] = {
            let mut it = self.bufs.iter_mut();
            std::array::from_fn(|_| {
                let b = it
                    .next()
                    .map_or(&mut [][..], |b| &mut b[offset..offset + size]);
                io::IoSliceMut::new(b)
            })
        };
        match state()?.recv(sock.into(), &mut slices, &mut self.metas) {
            Ok(n) => Ok(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
            Err(e) => Err(e),
        }
    }

    /// Message `i` of the last call: its buffer (payload at the offset), length, source,
    /// and the GRO segment size: the message holds datagrams of that many bytes each, the
    /// last one possibly shorter. A plain datagram has segment size = length.
    pub(crate) fn get(&mut self, i: usize) -> (&mut [u8], usize, Option<SocketAddr>, usize) {
        let m = &self.metas[i];
        let len = m.len;
        let seg = match m.stride {
            0 => len,
            s => s.min(len),
        };
        // IPv4-mapped sources of a dual-stack socket are their IPv4 addresses.
        let from = SocketAddr::new(m.addr.ip().to_canonical(), m.addr.port());
        (&mut self.bufs[i], len, Some(from), seg.max(1))
    }
}

/// A run of queued datagrams that leaves in one message: `count` datagrams of `seg`
/// bytes (the last may be shorter) to one destination, contiguous in the queue's data.
#[derive(Clone, Copy)]
struct Run {
    off: usize,
    len: usize,
    seg: usize,
    count: usize,
    to: SocketAddr,
}

impl Run {
    fn new(off: usize, len: usize, to: SocketAddr) -> Self {
        Self {
            off,
            len,
            seg: len.max(1),
            count: 1,
            to,
        }
    }

    /// Takes the next datagram if GSO can send it in this run: same destination,
    /// contiguous, no longer than the segment size and no shorter one before it (only the
    /// last segment may be short), within the kernel's count and size limits.
    fn absorb(&mut self, off: usize, len: usize, to: SocketAddr) -> bool {
        let fits = self.to == to
            && self.off + self.len == off
            && len <= self.seg
            && self.len.is_multiple_of(self.seg)
            && self.count < MAX_SEGMENTS
            && self.len + len <= MAX_GSO_BYTES;
        if fits {
            self.len += len;
            self.count += 1;
        }
        fits
    }
}

/// Groups `entries` (contiguous in their data) into runs GSO can send as one message.
fn runs(entries: &[(usize, usize, SocketAddr)], gso: bool, out: &mut Vec<Run>) {
    out.clear();
    for &(off, len, to) in entries {
        if gso && out.last_mut().is_some_and(|r| r.absorb(off, len, to)) {
            continue;
        }
        out.push(Run::new(off, len, to));
    }
}

/// Whether a send error means "this kernel or device cannot segment", not a lost datagram.
fn gso_unsupported(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EIO | libc::EINVAL | libc::EOPNOTSUPP | libc::ENOPROTOOPT)
    )
}

/// Sends `data` to `to` as one datagram, or, with `seg` below its length, as datagrams of
/// `seg` bytes segmented by the kernel (GSO).
pub(crate) fn send_segments(
    sock: &impl AsFd,
    to: SocketAddr,
    data: &[u8],
    seg: usize,
) -> io::Result<usize> {
    let t = quinn_udp::Transmit {
        destination: to,
        ecn: None,
        contents: data,
        segment_size: (seg < data.len()).then_some(seg),
        src_ip: None,
    };
    state()?.try_send(sock.into(), &t).map(|()| data.len())
}

/// Datagrams queued for one socket, sent a run (see [`Run`]) per message.
#[derive(Default)]
pub(crate) struct SendBatch {
    data: Vec<u8>,
    entries: Vec<(usize, usize, SocketAddr)>,
    runs: Vec<Run>,
}

impl SendBatch {
    /// Queues a copy of `bytes` for `to`.
    pub(crate) fn push(&mut self, to: SocketAddr, bytes: &[u8]) {
        let off = self.data.len();
        self.data.extend_from_slice(bytes);
        self.entries.push((off, bytes.len(), to));
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Sends everything queued (datagrams the socket buffer cannot take are dropped, as
    /// UDP would) and empties the queue. Returns how many datagrams went out.
    pub(crate) fn flush(&mut self, sock: &impl AsFd) -> usize {
        let mut sent = 0;
        let mut runs = std::mem::take(&mut self.runs);
        runs_for(&self.entries, &mut runs);
        let mut i = 0;
        while i < runs.len() {
            let r = runs[i];
            match send_segments(sock, r.to, &self.data[r.off..r.off + r.len], r.seg) {
                Ok(_) => sent += r.count,
                Err(e) if r.count > 1 && gso_unsupported(&e) => {
                    // The kernel or device cannot segment: send datagram by datagram
                    // from here on.
                    disable_gso();
                    let rest: Vec<(usize, usize, SocketAddr)> = self
                        .entries
                        .iter()
                        .copied()
                        .filter(|(off, _, _)| *off >= r.off)
                        .collect();
                    runs_for(&rest, &mut runs);
                    i = 0;
                    continue;
                }
                // A full buffer or an error: drop the run, as lost datagrams.
                Err(_) => {}
            }
            i += 1;
        }
        self.runs = runs;
        self.data.clear();
        self.entries.clear();
        sent
    }
}

fn runs_for(entries: &[(usize, usize, SocketAddr)], out: &mut Vec<Run>) {
    runs(entries, gso_on(), out);
}

/// Datagrams queued for relay sockets (client to peer), sent at the end of each step
/// with GSO where consecutive datagrams share a socket, a peer and a size.
pub(crate) struct RelayQueue<T> {
    data: Vec<u8>,
    entries: Vec<(T, usize, usize, SocketAddr)>,
}

impl<T> Default for RelayQueue<T> {
    fn default() -> Self {
        Self {
            data: Vec::new(),
            entries: Vec::new(),
        }
    }
}

impl<T: Copy + PartialEq> RelayQueue<T> {
    /// Queues a copy of `bytes` from relay `relay` to `to`.
    pub(crate) fn push(&mut self, relay: T, to: SocketAddr, bytes: &[u8]) {
        let off = self.data.len();
        self.data.extend_from_slice(bytes);
        self.entries.push((relay, off, bytes.len(), to));
    }

    /// Sends everything through the socket `sock_of(relay)`; unknown relays and full
    /// buffers drop their datagrams. Returns how many datagrams went out.
    pub(crate) fn flush<'s, S: AsFd + 's>(
        &mut self,
        mut sock_of: impl FnMut(T) -> Option<&'s S>,
    ) -> usize {
        let mut sent = 0;
        let mut i = 0;
        while i < self.entries.len() {
            let (relay, off, len, to) = self.entries[i];
            let mut run = Run::new(off, len, to);
            let mut j = i + 1;
            if gso_on() {
                while let Some(&(r2, o2, l2, t2)) = self.entries.get(j) {
                    if r2 != relay || !run.absorb(o2, l2, t2) {
                        break;
                    }
                    j += 1;
                }
            }
            if let Some(sock) = sock_of(relay) {
                match send_segments(sock, to, &self.data[run.off..run.off + run.len], run.seg) {
                    Ok(_) => sent += run.count,
                    Err(e) if run.count > 1 && gso_unsupported(&e) => {
                        disable_gso();
                        continue; // the same entries again, one by one
                    }
                    Err(_) => {}
                }
            }
            i = j;
        }
        self.data.clear();
        self.entries.clear();
        sent
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_round_trip() {
        let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        b.set_nonblocking(true).unwrap();
        let mut q = SendBatch::default();
        for i in 0..40u8 {
            q.push(b.local_addr().unwrap(), &[i; 10]);
        }
        assert_eq!(q.flush(&a), 40);
        assert_eq!(q.len(), 0);
        let mut r = RecvBatch::new(4, 2048, 3);
        let mut got = 0;
        while got < 40 {
            let n = r.recv(&b).unwrap();
            assert!(n > 0);
            for i in 0..n {
                let (buf, len, from, seg) = r.get(i);
                // GRO may hand several 10-byte datagrams over in one buffer.
                let mut off = 0;
                while off < len {
                    assert_eq!(buf[4 + off], got as u8);
                    off += seg.min(len - off);
                    got += 1;
                }
                assert_eq!(from, Some(a.local_addr().unwrap()));
            }
        }
        assert_eq!(got, 40);
        assert_eq!(r.recv(&b).unwrap(), 0);
    }

    #[test]
    fn a_dual_stack_socket_reports_ipv4_sources_as_ipv4() {
        let s = socket2::Socket::new(socket2::Domain::IPV6, socket2::Type::DGRAM, None).unwrap();
        s.set_only_v6(false).unwrap();
        s.bind(&"[::]:0".parse::<SocketAddr>().unwrap().into())
            .unwrap();
        let b: std::net::UdpSocket = s.into();
        b.set_nonblocking(true).unwrap();
        let port = b.local_addr().unwrap().port();
        let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        a.send_to(b"hi", ("127.0.0.1", port)).unwrap();
        let mut r = RecvBatch::new(0, 2048, 0);
        let mut n = 0;
        for _ in 0..100 {
            n = r.recv(&b).unwrap();
            if n > 0 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(n, 1);
        let from = r.get(0).2.unwrap();
        assert_eq!(from, a.local_addr().unwrap());
        // And an answer to that IPv4 address leaves the dual-stack socket.
        let mut q = SendBatch::default();
        q.push(from, b"back");
        assert_eq!(q.flush(&b), 1);
        a.set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(a.recv(&mut buf).unwrap(), 4);
    }

    #[test]
    fn runs_group_equal_datagrams_to_one_destination() {
        let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:2".parse().unwrap();
        let mut e = Vec::new();
        let mut off = 0;
        for (len, to) in [
            (100, a),
            (100, a),
            (100, a),
            (60, a),
            (100, a),
            (100, b),
            (200, b),
            (100, b),
        ] {
            e.push((off, len, to));
            off += len;
        }
        let mut out = Vec::new();
        runs(&e, true, &mut out);
        let got: Vec<(usize, usize, usize, SocketAddr)> =
            out.iter().map(|r| (r.len, r.seg, r.count, r.to)).collect();
        // A shorter datagram ends a run; a longer one or another peer starts a new one.
        assert_eq!(
            got,
            vec![
                (360, 100, 4, a),
                (100, 100, 1, a),
                (100, 100, 1, b),
                (300, 200, 2, b)
            ]
        );
        runs(&e, false, &mut out);
        assert_eq!(out.len(), e.len());
        // Bounded by the kernel's segment count.
        let many: Vec<_> = (0..100).map(|i| (i * 10, 10, a)).collect();
        runs(&many, true, &mut out);
        assert_eq!(
            out.iter().map(|r| r.count).collect::<Vec<_>>(),
            vec![64, 36]
        );
    }

    #[test]
    fn gso_sends_arrive_as_datagrams_or_gro_segments() {
        let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        b.set_nonblocking(true).unwrap();
        let gro = enable_gro(&b);
        let to = b.local_addr().unwrap();
        let mut q = SendBatch::default();
        for i in 0..10u8 {
            q.push(to, &[i; 100]);
        }
        q.push(to, &[99; 40]);
        assert_eq!(q.flush(&a), 11);
        let mut r = RecvBatch::new(4, 65535, 3);
        let mut seen = Vec::new();
        for _ in 0..100 {
            let n = r.recv(&b).unwrap();
            for i in 0..n {
                let (buf, len, from, seg) = r.get(i);
                assert_eq!(from, Some(a.local_addr().unwrap()));
                let mut off = 0;
                while off < len {
                    let l = seg.min(len - off);
                    seen.push((buf[4 + off], l));
                    off += l;
                }
            }
            if seen.len() >= 11 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let want: Vec<(u8, usize)> = (0..10u8).map(|i| (i, 100)).chain([(99, 40)]).collect();
        assert_eq!(seen, want, "gro enabled: {gro}");
        // The relay queue: same contract through one socket per relay.
        let mut rq = RelayQueue::<u8>::default();
        for i in 0..5u8 {
            rq.push(7, to, &[i; 50]);
        }
        assert_eq!(rq.flush(|k| (k == 7).then_some(&a)), 5);
        assert!(rq.is_empty());
    }
}
