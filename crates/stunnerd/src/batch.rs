#![allow(unsafe_code)] // recvmmsg/sendmmsg; each use carries a SAFETY comment
//! Batched UDP I/O: `recvmmsg` into a ring of reused buffers and `sendmmsg` from a
//! reused send queue, so a burst costs one system call each way instead of one per
//! datagram. No heap allocation per datagram: buffers and queues keep their capacity.

use std::io;
use std::mem::MaybeUninit;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::RawFd;

/// Datagrams per `recvmmsg`/`sendmmsg` call.
pub(crate) const BATCH: usize = 32;

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
        }
        // SAFETY: `hdrs` holds BATCH valid headers whose iovecs point into `self.bufs`
        // (each at least `offset + size` long) and whose names point into `self.addrs`;
        // all outlive the call. MSG_DONTWAIT keeps it from blocking.
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
        for (len, h) in self.lens.iter_mut().zip(&hdrs).take(n) {
            *len = h.msg_len as usize;
        }
        Ok(n)
    }

    /// Datagram `i` of the last call: its buffer (payload at the offset), length and
    /// source.
    pub(crate) fn get(&mut self, i: usize) -> (&mut [u8], usize, Option<SocketAddr>) {
        let from = to_socket_addr(&self.addrs[i]);
        (&mut self.bufs[i], self.lens[i], from)
    }
}

/// Datagrams queued for one socket, sent with `sendmmsg`.
#[derive(Default)]
pub(crate) struct SendBatch {
    data: Vec<u8>,
    entries: Vec<(usize, usize, SocketAddr)>,
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
    /// UDP would) and empties the queue. Returns how many went out.
    pub(crate) fn flush(&mut self, fd: RawFd) -> usize {
        let mut sent = 0;
        let mut start = 0;
        while start < self.entries.len() {
            let chunk = &self.entries[start..(start + BATCH).min(self.entries.len())];
            // SAFETY: all-zero is valid for these C structs.
            let mut addrs: [libc::sockaddr_storage; BATCH] =
                unsafe { MaybeUninit::zeroed().assume_init() };
            let mut iovs: [libc::iovec; BATCH] = [libc::iovec {
                iov_base: std::ptr::null_mut(),
                iov_len: 0,
            }; BATCH];
            // SAFETY: as above.
            let mut hdrs: [libc::mmsghdr; BATCH] = unsafe { MaybeUninit::zeroed().assume_init() };
            for (i, (off, len, to)) in chunk.iter().enumerate() {
                let namelen = from_socket_addr(*to, &mut addrs[i]);
                iovs[i].iov_base = self.data[*off..].as_ptr().cast_mut().cast();
                iovs[i].iov_len = *len;
                hdrs[i].msg_hdr.msg_name = std::ptr::from_mut(&mut addrs[i]).cast();
                hdrs[i].msg_hdr.msg_namelen = namelen;
                hdrs[i].msg_hdr.msg_iov = std::ptr::from_mut(&mut iovs[i]);
                hdrs[i].msg_hdr.msg_iovlen = 1;
            }
            // SAFETY: the first `chunk.len()` headers are valid; their iovecs point into
            // `self.data` (read only by the kernel) and their names into `addrs`, all
            // alive across the call.
            let n = unsafe {
                libc::sendmmsg(
                    fd,
                    hdrs.as_mut_ptr(),
                    chunk.len() as libc::c_uint,
                    libc::MSG_DONTWAIT,
                )
            };
            if n <= 0 {
                // Full buffer or an error on the first datagram: skip it, as a lost
                // datagram, and go on with the rest.
                start += 1;
                continue;
            }
            sent += n as usize;
            start += n as usize;
        }
        self.data.clear();
        self.entries.clear();
        sent
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
                let (buf, len, from) = r.get(i);
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
}
