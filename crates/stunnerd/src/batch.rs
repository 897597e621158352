#![allow(unsafe_code)] // recvmmsg/sendmmsg; each use carries a SAFETY comment
//! Batched UDP I/O: `recvmmsg` into a ring of reused buffers and `sendmmsg` from a
//! reused send queue, so a burst costs one system call each way instead of one per
//! datagram. With UDP GRO (`UDP_GRO`) one received buffer may hold many datagrams of one
//! flow, all `segment` bytes but the last; with UDP GSO (`UDP_SEGMENT`) consecutive
//! equal-size datagrams to one destination leave as one buffer the kernel splits. Both
//! cut the per-datagram cost of the socket layer. No heap allocation per datagram:
//! buffers and queues keep their capacity.

use std::io;
use std::mem::MaybeUninit;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::RawFd;

/// Datagrams per `recvmmsg`/`sendmmsg` call.
pub(crate) const BATCH: usize = 32;

// Linux UDP socket options (include/uapi/linux/udp.h); not in the libc crate for glibc.
const UDP_SEGMENT: libc::c_int = 103;
const UDP_GRO: libc::c_int = 104;
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

/// Asks the kernel to coalesce same-flow datagrams on `fd` (UDP GRO, Linux 5.0+). False
/// where unsupported; receiving then works datagram by datagram as before.
pub(crate) fn enable_gro(fd: RawFd) -> bool {
    if std::env::var_os("STUNNERD_NO_GRO").is_some() {
        return false;
    }
    let one: libc::c_int = 1;
    // SAFETY: a plain setsockopt with a pointer to a live c_int and its size.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_UDP,
            UDP_GRO,
            std::ptr::from_ref(&one).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    rc == 0
}

/// Control-message space for one `c_int` (CMSG_SPACE(4) is 24 on 64-bit Linux).
type Ctrl = [u64; 4];

/// Fills `ctrl` with one UDP_SEGMENT control message for `seg`; returns its length.
fn put_segment_cmsg(hdr: &mut libc::msghdr, ctrl: &mut Ctrl, seg: u16) {
    hdr.msg_control = ctrl.as_mut_ptr().cast();
    // SAFETY: CMSG_SPACE is a pure size computation.
    hdr.msg_controllen = unsafe { libc::CMSG_SPACE(std::mem::size_of::<u16>() as u32) } as _;
    // SAFETY: msg_control points at `ctrl`, which is at least CMSG_SPACE(2) bytes and
    // 8-byte aligned, so the first header and its data fit; all writes stay inside it.
    unsafe {
        let c = libc::CMSG_FIRSTHDR(hdr);
        (*c).cmsg_level = libc::SOL_UDP;
        (*c).cmsg_type = UDP_SEGMENT;
        (*c).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<u16>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<u16>(), seg);
    }
}

/// The GRO segment size the kernel reported in `hdr`'s control data, if any.
fn gro_segment(hdr: &libc::msghdr) -> usize {
    if hdr.msg_controllen == 0 || hdr.msg_control.is_null() {
        return 0;
    }
    // SAFETY: the kernel filled msg_control with `msg_controllen` bytes of control
    // messages; CMSG_FIRSTHDR/CMSG_NXTHDR stay within them and CMSG_DATA of a UDP_GRO
    // message holds one c_int.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(hdr);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_UDP && (*c).cmsg_type == UDP_GRO {
                let v = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::c_int>());
                return usize::try_from(v).unwrap_or(0);
            }
            c = libc::CMSG_NXTHDR(hdr, c);
        }
    }
    0
}

fn to_socket_addr(s: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match i32::from(s.ss_family) {
        libc::AF_INET => {
            // SAFETY: the kernel wrote a sockaddr_in (family AF_INET) into storage that
            // is large and aligned enough for any sockaddr.
            let a = unsafe { &*(std::ptr::from_ref(s).cast::<libc::sockaddr_in>()) };
            let ip = Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
            Some(SocketAddr::V4(SocketAddrV4::new(
                ip,
                u16::from_be(a.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: as above, for sockaddr_in6 (family AF_INET6).
            let a = unsafe { &*(std::ptr::from_ref(s).cast::<libc::sockaddr_in6>()) };
            let ip = Ipv6Addr::from(a.sin6_addr.s6_addr);
            Some(SocketAddr::V6(SocketAddrV6::new(
                ip,
                u16::from_be(a.sin6_port),
                a.sin6_flowinfo,
                a.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

fn from_socket_addr(a: SocketAddr, out: &mut libc::sockaddr_storage) -> libc::socklen_t {
    // SAFETY: all-zero is a valid sockaddr_storage.
    *out = unsafe { MaybeUninit::zeroed().assume_init() };
    match a {
        SocketAddr::V4(v4) => {
            // SAFETY: storage is large and aligned enough for a sockaddr_in.
            let s = unsafe { &mut *(std::ptr::from_mut(out).cast::<libc::sockaddr_in>()) };
            s.sin_family = libc::AF_INET as libc::sa_family_t;
            s.sin_port = v4.port().to_be();
            s.sin_addr.s_addr = u32::from(*v4.ip()).to_be();
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t
        }
        SocketAddr::V6(v6) => {
            // SAFETY: storage is large and aligned enough for a sockaddr_in6.
            let s = unsafe { &mut *(std::ptr::from_mut(out).cast::<libc::sockaddr_in6>()) };
            s.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            s.sin6_port = v6.port().to_be();
            s.sin6_addr.s6_addr = v6.ip().octets();
            s.sin6_flowinfo = v6.flowinfo();
            s.sin6_scope_id = v6.scope_id();
            std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t
        }
    }
}

/// Receive buffers for one `recvmmsg` call.
pub(crate) struct RecvBatch {
    bufs: Vec<Vec<u8>>,
    addrs: Vec<libc::sockaddr_storage>,
    lens: Vec<usize>,
    segs: Vec<usize>,
    ctrls: Vec<Ctrl>,
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
            // SAFETY: all-zero is a valid sockaddr_storage.
            addrs: vec![unsafe { MaybeUninit::zeroed().assume_init() }; BATCH],
            lens: vec![0; BATCH],
            segs: vec![0; BATCH],
            ctrls: vec![[0; 4]; BATCH],
            offset,
            size,
        }
    }

    /// Receives up to `BATCH` datagrams from a non-blocking socket; `Ok(0)` means none
    /// was waiting.
    pub(crate) fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        let mut iovs: [libc::iovec; BATCH] = [libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        }; BATCH];
        // SAFETY: all-zero is a valid mmsghdr (null pointers, zero lengths).
        let mut hdrs: [libc::mmsghdr; BATCH] = unsafe { MaybeUninit::zeroed().assume_init() };
        for i in 0..BATCH {
            iovs[i].iov_base = self.bufs[i][self.offset..].as_mut_ptr().cast();
            iovs[i].iov_len = self.size;
            hdrs[i].msg_hdr.msg_name = std::ptr::from_mut(&mut self.addrs[i]).cast();
            hdrs[i].msg_hdr.msg_namelen =
                std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            hdrs[i].msg_hdr.msg_iov = std::ptr::from_mut(&mut iovs[i]);
            hdrs[i].msg_hdr.msg_iovlen = 1;
            hdrs[i].msg_hdr.msg_control = self.ctrls[i].as_mut_ptr().cast();
            hdrs[i].msg_hdr.msg_controllen = std::mem::size_of::<Ctrl>() as _;
        }
        // SAFETY: `hdrs` holds BATCH valid headers whose iovecs point into `self.bufs`
        // (each at least `offset + size` long), whose names point into `self.addrs` and
        // whose control buffers into `self.ctrls`; all outlive the call. MSG_DONTWAIT
        // keeps it from blocking.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                hdrs.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::WouldBlock {
                Ok(0)
            } else {
                Err(e)
            };
        }
        let n = n as usize;
        for ((len, seg), h) in self.lens.iter_mut().zip(&mut self.segs).zip(&hdrs).take(n) {
            *len = h.msg_len as usize;
            *seg = gro_segment(&h.msg_hdr);
        }
        Ok(n)
    }

    /// Message `i` of the last call: its buffer (payload at the offset), length, source,
    /// and the GRO segment size: the message holds datagrams of that many bytes each, the
    /// last one possibly shorter. A plain datagram has segment size = length.
    pub(crate) fn get(&mut self, i: usize) -> (&mut [u8], usize, Option<SocketAddr>, usize) {
        let from = to_socket_addr(&self.addrs[i]);
        let len = self.lens[i];
        let seg = match self.segs[i] {
            0 => len,
            s => s.min(len),
        };
        (&mut self.bufs[i], len, from, seg.max(1))
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
    fd: RawFd,
    to: SocketAddr,
    data: &[u8],
    seg: usize,
) -> io::Result<usize> {
    // SAFETY: all-zero is valid for these C structs.
    let mut addr: libc::sockaddr_storage = unsafe { MaybeUninit::zeroed().assume_init() };
    let namelen = from_socket_addr(to, &mut addr);
    let mut iov = libc::iovec {
        iov_base: data.as_ptr().cast_mut().cast(),
        iov_len: data.len(),
    };
    // SAFETY: as above.
    let mut hdr: libc::msghdr = unsafe { MaybeUninit::zeroed().assume_init() };
    hdr.msg_name = std::ptr::from_mut(&mut addr).cast();
    hdr.msg_namelen = namelen;
    hdr.msg_iov = std::ptr::from_mut(&mut iov);
    hdr.msg_iovlen = 1;
    let mut ctrl: Ctrl = [0; 4];
    if seg < data.len() {
        put_segment_cmsg(&mut hdr, &mut ctrl, u16::try_from(seg).unwrap_or(u16::MAX));
    }
    // SAFETY: `hdr` points at `addr`, `iov` (over `data`, only read) and `ctrl`, all alive
    // across the call.
    let n = unsafe { libc::sendmsg(fd, &hdr, libc::MSG_DONTWAIT) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Datagrams queued for one socket, sent with `sendmmsg` and GSO.
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
    pub(crate) fn flush(&mut self, fd: RawFd) -> usize {
        let mut sent = 0;
        let mut runs = std::mem::take(&mut self.runs);
        runs_for(&self.entries, &mut runs);
        let mut start = 0;
        while start < runs.len() {
            let chunk = &runs[start..(start + BATCH).min(runs.len())];
            // SAFETY: all-zero is valid for these C structs.
            let mut addrs: [libc::sockaddr_storage; BATCH] =
                unsafe { MaybeUninit::zeroed().assume_init() };
            let mut iovs: [libc::iovec; BATCH] = [libc::iovec {
                iov_base: std::ptr::null_mut(),
                iov_len: 0,
            }; BATCH];
            let mut ctrls: [Ctrl; BATCH] = [[0; 4]; BATCH];
            // SAFETY: as above.
            let mut hdrs: [libc::mmsghdr; BATCH] = unsafe { MaybeUninit::zeroed().assume_init() };
            for (i, r) in chunk.iter().enumerate() {
                let namelen = from_socket_addr(r.to, &mut addrs[i]);
                iovs[i].iov_base = self.data[r.off..].as_ptr().cast_mut().cast();
                iovs[i].iov_len = r.len;
                let h = &mut hdrs[i].msg_hdr;
                h.msg_name = std::ptr::from_mut(&mut addrs[i]).cast();
                h.msg_namelen = namelen;
                h.msg_iov = std::ptr::from_mut(&mut iovs[i]);
                h.msg_iovlen = 1;
                if r.count > 1 {
                    put_segment_cmsg(h, &mut ctrls[i], u16::try_from(r.seg).unwrap_or(u16::MAX));
                }
            }
            // SAFETY: the first `chunk.len()` headers are valid; their iovecs point into
            // `self.data` (read only by the kernel), their names into `addrs` and their
            // control data into `ctrls`, all alive across the call.
            let n = unsafe {
                libc::sendmmsg(
                    fd,
                    hdrs.as_mut_ptr(),
                    chunk.len() as libc::c_uint,
                    libc::MSG_DONTWAIT,
                )
            };
            if n <= 0 {
                let e = io::Error::last_os_error();
                if chunk[0].count > 1 && gso_unsupported(&e) {
                    // The kernel or device cannot segment: send datagram by datagram
                    // from here on.
                    disable_gso();
                    let first = chunk[0].off;
                    let rest: Vec<(usize, usize, SocketAddr)> = self
                        .entries
                        .iter()
                        .copied()
                        .filter(|(off, _, _)| *off >= first)
                        .collect();
                    runs_for(&rest, &mut runs);
                    start = 0;
                    continue;
                }
                // Full buffer or an error on the first message: drop it, as lost
                // datagrams, and go on with the rest.
                start += 1;
                continue;
            }
            let n = n as usize;
            sent += chunk[..n].iter().map(|r| r.count).sum::<usize>();
            start += n;
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

    /// Sends everything through `fd_of(relay)`; unknown relays and full buffers drop
    /// their datagrams. Returns how many datagrams went out.
    pub(crate) fn flush(&mut self, mut fd_of: impl FnMut(T) -> Option<RawFd>) -> usize {
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
            if let Some(fd) = fd_of(relay) {
                match send_segments(fd, to, &self.data[run.off..run.off + run.len], run.seg) {
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
    use std::os::fd::AsRawFd;

    #[test]
    fn batches_round_trip() {
        let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        b.set_nonblocking(true).unwrap();
        let mut q = SendBatch::default();
        for i in 0..40u8 {
            q.push(b.local_addr().unwrap(), &[i; 10]);
        }
        assert_eq!(q.flush(a.as_raw_fd()), 40);
        assert_eq!(q.len(), 0);
        let mut r = RecvBatch::new(4, 2048, 3);
        let mut got = 0;
        while got < 40 {
            let n = r.recv(b.as_raw_fd()).unwrap();
            assert!(n > 0);
            for i in 0..n {
                let (buf, len, from, _) = r.get(i);
                assert_eq!(len, 10);
                assert_eq!(buf[4], got as u8);
                assert_eq!(from, Some(a.local_addr().unwrap()));
                got += 1;
            }
        }
        assert_eq!(r.recv(b.as_raw_fd()).unwrap(), 0);
        let v6: SocketAddr = "[::1]:5".parse().unwrap();
        // SAFETY: all-zero is a valid sockaddr_storage.
        let mut st = unsafe { MaybeUninit::<libc::sockaddr_storage>::zeroed().assume_init() };
        from_socket_addr(v6, &mut st);
        assert_eq!(to_socket_addr(&st), Some(v6));
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
        let gro = enable_gro(b.as_raw_fd());
        let to = b.local_addr().unwrap();
        let mut q = SendBatch::default();
        for i in 0..10u8 {
            q.push(to, &[i; 100]);
        }
        q.push(to, &[99; 40]);
        assert_eq!(q.flush(a.as_raw_fd()), 11);
        let mut r = RecvBatch::new(4, 65535, 3);
        let mut seen = Vec::new();
        for _ in 0..100 {
            let n = r.recv(b.as_raw_fd()).unwrap();
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
        assert_eq!(rq.flush(|k| (k == 7).then(|| a.as_raw_fd())), 5);
        assert!(rq.is_empty());
    }
}
