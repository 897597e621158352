//! The network interfaces and the IPv4 and IPv6 routes of the current network namespace, from
//! `/proc/net` (which follows the calling thread's namespace, unlike `/sys`).

use std::net::IpAddr;

use crate::Error;

/// The interfaces of this namespace (`/proc/net/dev`), loopback included.
pub(crate) fn interfaces() -> Result<Vec<String>, Error> {
    let text = std::fs::read_to_string("/proc/net/dev")
        .map_err(|e| Error::Interfaces(format!("/proc/net/dev: {e}")))?;
    Ok(parse_interfaces(&text))
}

fn parse_interfaces(text: &str) -> Vec<String> {
    text.lines()
        .skip(2)
        .filter_map(|l| l.split_once(':').map(|(n, _)| n.trim().to_string()))
        .filter(|n| !n.is_empty())
        .collect()
}

/// The index of interface `name`.
pub(crate) fn ifindex(name: &str) -> Option<u32> {
    nix::net::if_::if_nametoindex(name).ok().filter(|i| *i != 0)
}

/// One route: a destination prefix (as a 128-bit number; IPv4 in the low 32 bits) and
/// its interface.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Route {
    iface: String,
    dest: u128,
    mask: u128,
    metric: u32,
}

fn hex_addr(s: &str) -> Option<u32> {
    // The kernel prints the network-order address as a native-endian u32.
    let v = u32::from_str_radix(s, 16).ok()?;
    Some(u32::from_be_bytes(v.to_ne_bytes()))
}

fn parse_routes(text: &str) -> Vec<Route> {
    const RTF_UP: u32 = 0x1;
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let flags = u32::from_str_radix(f.get(3)?, 16).ok()?;
            (flags & RTF_UP != 0).then_some(())?;
            Some(Route {
                iface: f.first()?.to_string(),
                dest: u128::from(hex_addr(f.get(1)?)?),
                mask: u128::from(hex_addr(f.get(7)?)?),
                metric: f.get(6)?.parse().ok()?,
            })
        })
        .collect()
}

/// `/proc/net/ipv6_route`: destination, prefix length, source, its length, next hop,
/// metric, refcount, use, flags, interface; addresses as 32 hex digits.
fn parse_routes6(text: &str) -> Vec<Route> {
    const RTF_UP: u32 = 0x1;
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let flags = u32::from_str_radix(f.get(8)?, 16).ok()?;
            (flags & RTF_UP != 0).then_some(())?;
            let len = u32::from_str_radix(f.get(1)?, 16).ok()?.min(128);
            let mask = if len == 0 {
                0
            } else {
                u128::MAX << (128 - len)
            };
            Some(Route {
                iface: f.get(9)?.to_string(),
                dest: u128::from_str_radix(f.first()?, 16).ok()? & mask,
                mask,
                metric: u32::from_str_radix(f.get(5)?, 16).ok()?,
            })
        })
        // The local table's entries (our own addresses) route through loopback.
        .filter(|r| r.iface != "lo")
        .collect()
}

/// The interface the main table routes `dst` out of: the longest matching prefix, then
/// the lowest metric. (Policy routing rules are not consulted.)
fn best(routes: &[Route], dst: u128) -> Option<&Route> {
    let d = dst;
    routes
        .iter()
        .filter(|r| d & r.mask == r.dest & r.mask)
        .min_by_key(|r| (std::cmp::Reverse(r.mask.count_ones()), r.metric))
}

/// The index of the interface that packets to `dst` leave by.
pub(crate) fn egress_ifindex(dst: IpAddr) -> Result<u32, Error> {
    let (file, key) = match dst {
        IpAddr::V4(a) => ("/proc/net/route", u128::from(u32::from(a))),
        IpAddr::V6(a) => ("/proc/net/ipv6_route", u128::from(a)),
    };
    let text =
        std::fs::read_to_string(file).map_err(|e| Error::Route(dst, format!("{file}: {e}")))?;
    let routes = if dst.is_ipv6() {
        parse_routes6(&text)
    } else {
        parse_routes(&text)
    };
    let r = best(&routes, key).ok_or_else(|| Error::Route(dst, "no route".into()))?;
    ifindex(&r.iface).ok_or_else(|| Error::Route(dst, format!("no interface {:?}", r.iface)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const ROUTES: &str =
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
eth0\t00000000\t0101A8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0
g1\t00010A0A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
g2\t00020A0A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
down\t00020A0A\t00000000\t0000\t0\t0\t0\t00FFFFFF\t0\t0\t0
";

    #[test]
    fn longest_prefix_of_the_up_routes() {
        let routes = parse_routes(ROUTES);
        assert_eq!(routes.len(), 3, "the route that is not up is left out");
        let at = |ip: [u8; 4]| {
            best(&routes, u128::from(u32::from(Ipv4Addr::from(ip)))).map(|r| r.iface.as_str())
        };
        assert_eq!(at([10, 10, 2, 7]), Some("g2"));
        assert_eq!(at([10, 10, 1, 2]), Some("g1"));
        assert_eq!(at([8, 8, 8, 8]), Some("eth0"));
    }

    #[test]
    fn ipv6_routes() {
        let text = "fd000201000100000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001 g1
fd000201000200000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001 g2
00000000000000000000000000000000 00 00000000000000000000000000000000 00 fd000201000100000000000000000001 00000400 00000001 00000000 00000003 eth0
fd000201000100000000000000000001 80 00000000000000000000000000000000 00 00000000000000000000000000000000 00000000 00000002 00000000 80200001 lo
";
        let routes = parse_routes6(text);
        assert_eq!(routes.len(), 3, "the local route through lo is left out");
        let at = |s: &str| {
            best(&routes, u128::from(s.parse::<Ipv6Addr>().unwrap())).map(|r| r.iface.as_str())
        };
        assert_eq!(at("fd00:201:2::2"), Some("g2"));
        assert_eq!(at("fd00:201:1::2"), Some("g1"));
        assert_eq!(at("2001:db8::1"), Some("eth0"));
    }

    #[test]
    fn interface_names() {
        let dev = "Inter-|   Receive
 face |bytes    packets
    lo: 0 0
  eth0: 1 2
";
        assert_eq!(parse_interfaces(dev), ["lo", "eth0"]);
    }
}
