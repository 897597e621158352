//! Socket helpers: dual-stack listener sockets (with `SO_REUSEPORT` for UDP workers),
//! relay sockets, and address mapping between IPv4 peers and dual-stack sockets.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use socket2::{Domain, Protocol, Socket, Type};

use crate::Error;

/// The wildcard address of a listener on `port`: dual-stack `[::]:port`.
pub(crate) fn wildcard(port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port)
}

fn dual_stack(
    kind: Type,
    proto: Protocol,
    addr: SocketAddr,
    reuse_port: bool,
) -> Result<Socket, Error> {
    let bind_err = |source| Error::Bind { addr, source };
    let s = Socket::new(Domain::for_address(addr), kind, Some(proto)).map_err(bind_err)?;
    if addr.is_ipv6() {
        // Serve IPv4 clients too (upstream binds the wildcard the same way).
        s.set_only_v6(false).map_err(bind_err)?;
    }
    s.set_reuse_address(true).map_err(bind_err)?;
    if reuse_port {
        s.set_reuse_port(true).map_err(bind_err)?;
    }
    s.set_nonblocking(true).map_err(bind_err)?;
    s.bind(&addr.into()).map_err(bind_err)?;
    Ok(s)
}

/// A non-blocking UDP listener socket on `[::]:port`; `reuse_port` for worker sets.
pub(crate) fn udp_listener(port: u16, reuse_port: bool) -> Result<std::net::UdpSocket, Error> {
    let s = dual_stack(Type::DGRAM, Protocol::UDP, wildcard(port), reuse_port)?;
    // Room for bursts while a worker is busy.
    let _ = s.set_recv_buffer_size(4 << 20);
    let _ = s.set_send_buffer_size(4 << 20);
    // UDP GRO: a client's GSO burst arrives as one buffer, which the read path splits
    // per segment. Bursts of 8 x 1200 B cost 15-20 % less server CPU with it, and paired
    // paced runs lose no more without it (docs/PERFORMANCE.md). `STUNNERD_NO_GRO=1`
    // turns it off.
    crate::batch::enable_gro(&s);
    Ok(s.into())
}

/// A non-blocking TCP listener on `[::]:port`.
pub(crate) fn tcp_listener(port: u16) -> Result<std::net::TcpListener, Error> {
    let addr = wildcard(port);
    let s = dual_stack(Type::STREAM, Protocol::TCP, addr, false)?;
    s.listen(1024)
        .map_err(|source| Error::Bind { addr, source })?;
    Ok(s.into())
}

/// A relay socket of the family on `port` (0: ephemeral). Returns it and its port.
pub(crate) fn relay_socket_at(
    ipv6: bool,
    port: u16,
) -> std::io::Result<(std::net::UdpSocket, u16)> {
    let domain = if ipv6 { Domain::IPV6 } else { Domain::IPV4 };
    let s = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
    if ipv6 {
        s.set_only_v6(true)?;
    }
    s.set_nonblocking(true)?;
    let any: SocketAddr = if ipv6 {
        wildcard(port)
    } else {
        ([0, 0, 0, 0], port).into()
    };
    s.bind(&any.into())?;
    let _ = s.set_recv_buffer_size(1 << 20);
    crate::batch::enable_gro(&s);
    let port = s
        .local_addr()?
        .as_socket()
        .map(|a| a.port())
        .ok_or_else(|| std::io::Error::other("relay socket has no address"))?;
    Ok((s.into(), port))
}

/// A relay socket for an allocation (RFC 8656 §7.2): an even port when asked, and with
/// `reserve_next` also the socket of the next port up, held for a RESERVATION-TOKEN.
pub(crate) fn relay_socket(
    ipv6: bool,
    even_port: bool,
    reserve_next: bool,
    dont_fragment: bool,
) -> std::io::Result<(std::net::UdpSocket, u16, Option<std::net::UdpSocket>)> {
    for _ in 0..32 {
        let (s, port) = relay_socket_at(ipv6, 0)?;
        if even_port && port % 2 == 1 {
            continue;
        }
        let next = if reserve_next {
            match port.checked_add(1).map(|p| relay_socket_at(ipv6, p)) {
                Some(Ok((n, _))) => Some(n),
                _ => continue,
            }
        } else {
            None
        };
        if dont_fragment && !ipv6 {
            set_dont_fragment(&Socket::from(s.try_clone()?))?;
        }
        return Ok((s, port, next));
    }
    Err(std::io::Error::other("no suitable relay port found"))
}

/// An address as the core sees it: IPv4-mapped IPv6 becomes IPv4.
pub(crate) fn canonical(a: SocketAddr) -> SocketAddr {
    SocketAddr::new(a.ip().to_canonical(), a.port())
}

/// An address as a socket of `local`'s family needs it: IPv4 becomes IPv4-mapped on an
/// IPv6 (dual-stack) socket.
pub(crate) fn for_socket(local_is_v6: bool, a: SocketAddr) -> SocketAddr {
    match a.ip() {
        IpAddr::V4(v4) if local_is_v6 => SocketAddr::new(IpAddr::V6(v4.to_ipv6_mapped()), a.port()),
        _ => a,
    }
}

/// Sets DF on every IPv4 datagram of `s` (`IP_MTU_DISCOVER = IP_PMTUDISC_DO`).
#[allow(unsafe_code)]
fn set_dont_fragment(s: &Socket) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let val: libc::c_int = libc::IP_PMTUDISC_DO;
    // SAFETY: the fd is a live socket owned by `s`; the option value is a c_int that
    // lives across the call, and its size is passed.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_MTU_DISCOVER,
            (&raw const val).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}
