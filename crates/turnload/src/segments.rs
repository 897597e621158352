//! UDP GSO sends and GRO receives for the generator (nix's safe wrappers), so the load
//! can come in bursts of equal datagrams the way media does.

use std::io::{IoSlice, IoSliceMut};
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd};

use nix::sys::socket::{
    ControlMessage, ControlMessageOwned, MsgFlags, SockaddrStorage, recvmsg, sendmsg, setsockopt,
    sockopt,
};

/// Turns on GRO for a socket; false where the kernel lacks it.
pub(crate) fn enable_gro(sock: &impl AsFd) -> bool {
    setsockopt(sock, sockopt::UdpGroSegment, &true).is_ok()
}

/// Sends `data` to `to`, segmented by the kernel into datagrams of `seg` bytes when `seg`
/// is below its length (GSO).
pub(crate) fn send(
    sock: &impl AsRawFd,
    to: SocketAddr,
    data: &[u8],
    seg: usize,
) -> std::io::Result<usize> {
    let addr = SockaddrStorage::from(to);
    let seg16 = u16::try_from(seg).unwrap_or(u16::MAX);
    let cmsg = [ControlMessage::UdpGsoSegments(&seg16)];
    let cmsgs: &[ControlMessage] = if seg < data.len() { &cmsg } else { &[] };
    sendmsg(
        sock.as_raw_fd(),
        &[IoSlice::new(data)],
        cmsgs,
        MsgFlags::MSG_DONTWAIT,
        Some(&addr),
    )
    .map_err(std::io::Error::from)
}

/// Receives one (possibly GRO-coalesced) buffer: its length, source and segment size
/// (the length when not coalesced).
pub(crate) fn recv(
    sock: &impl AsRawFd,
    buf: &mut [u8],
) -> std::io::Result<(usize, Option<SocketAddr>, usize)> {
    let mut cmsg = nix::cmsg_space!(i32);
    let mut iov = [IoSliceMut::new(buf)];
    let msg = recvmsg::<SockaddrStorage>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::MSG_DONTWAIT,
    )
    .map_err(std::io::Error::from)?;
    let len = msg.bytes;
    let mut seg = len;
    if let Ok(cmsgs) = msg.cmsgs() {
        for c in cmsgs {
            if let ControlMessageOwned::UdpGroSegments(s) = c {
                seg = usize::try_from(s).unwrap_or(len).clamp(1, len.max(1));
            }
        }
    }
    let from = msg.address.and_then(|a: SockaddrStorage| {
        a.as_sockaddr_in()
            .map(|v4| SocketAddr::from((v4.ip(), v4.port())))
            .or_else(|| {
                a.as_sockaddr_in6()
                    .map(|v6| SocketAddr::from((v6.ip(), v6.port())))
            })
    });
    Ok((len, from, seg.max(1)))
}
