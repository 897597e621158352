//! Cluster endpoints: `IP[/prefix][:<lo-hi>]`, IPv4 and IPv6.
//!
//! A plain IP is a /32 (or /128) prefix; a missing port range admits every port. Host
//! bits under the prefix are cleared, as upstream does (`10.1.2.3/8` is `10.0.0.0/8`).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// An IP prefix with an optional port range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Endpoint {
    network: IpAddr,
    prefix_len: u8,
    /// Whether the text named a prefix length (affects rendering only).
    explicit_prefix: bool,
    ports: Option<(u16, u16)>,
}

impl Endpoint {
    /// Builds an endpoint; host bits under the prefix are cleared. `None` if the prefix
    /// is longer than the address or the port range is reversed.
    pub fn new(addr: IpAddr, prefix_len: Option<u8>, ports: Option<(u16, u16)>) -> Option<Self> {
        let max = max_prefix(addr);
        let len = prefix_len.unwrap_or(max);
        if len > max || ports.is_some_and(|(lo, hi)| lo > hi) {
            return None;
        }
        Some(Self {
            network: mask(addr, len),
            prefix_len: len,
            explicit_prefix: prefix_len.is_some(),
            ports,
        })
    }

    /// The network address (host bits cleared).
    pub fn network(&self) -> IpAddr {
        self.network
    }

    /// The prefix length.
    pub fn prefix_len(&self) -> u8 {
        self.prefix_len
    }

    /// The inclusive port range, `None` for every port.
    pub fn ports(&self) -> Option<(u16, u16)> {
        self.ports
    }

    /// Whether `ip` lies in the prefix. IPv4-mapped IPv6 addresses match IPv4 prefixes.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        if ip.is_ipv4() != self.network.is_ipv4() {
            return false;
        }
        mask(ip, self.prefix_len) == self.network
    }

    /// Whether `ip` lies in the prefix and `port` in the range. Port 0 skips the port
    /// check (used for permission checks, which carry no port: RFC 8656 §9).
    pub fn matches(&self, ip: IpAddr, port: u16) -> bool {
        self.contains(ip)
            && (port == 0 || self.ports.is_none_or(|(lo, hi)| (lo..=hi).contains(&port)))
    }
}

fn max_prefix(addr: IpAddr) -> u8 {
    if addr.is_ipv4() { 32 } else { 128 }
}

fn mask(addr: IpAddr, len: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let m = if len == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(len))
            };
            IpAddr::V4(Ipv4Addr::from(u32::from(a) & m))
        }
        IpAddr::V6(a) => {
            let m = if len == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(len))
            };
            IpAddr::V6(Ipv6Addr::from(u128::from(a) & m))
        }
    }
}

/// Why an endpoint failed to parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointError(pub String);

impl fmt::Display for EndpointError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for EndpointError {}

impl FromStr for Endpoint {
    type Err = EndpointError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |m: &str| EndpointError(m.to_string());
        let (cidr, ports) = match s.strip_suffix('>').and_then(|r| r.rsplit_once(":<")) {
            Some((cidr, range)) => {
                let (lo, hi) = range
                    .split_once('-')
                    .ok_or_else(|| err("port range must be <lo-hi>"))?;
                let lo = parse_port(lo)?;
                let hi = parse_port(hi)?;
                if lo > hi {
                    return Err(EndpointError(format!("port range {lo}-{hi} is reversed")));
                }
                (cidr, Some((lo, hi)))
            }
            None => (s, None),
        };
        let (ip, prefix) = match cidr.split_once('/') {
            Some((ip, len)) => {
                let len = len
                    .parse::<u8>()
                    .ok()
                    .filter(|_| !len.is_empty() && len.bytes().all(|b| b.is_ascii_digit()))
                    .ok_or_else(|| {
                        EndpointError(format!("prefix length {len:?} is not a number"))
                    })?;
                (ip, Some(len))
            }
            None => (cidr, None),
        };
        let addr: IpAddr = ip
            .parse()
            .map_err(|_| EndpointError(format!("{ip:?} is not an IP address")))?;
        if let Some(len) = prefix
            && len > max_prefix(addr)
        {
            return Err(EndpointError(format!(
                "prefix length {len} is longer than {}",
                max_prefix(addr)
            )));
        }
        Self::new(addr, prefix, ports).ok_or_else(|| err("invalid endpoint"))
    }
}

fn parse_port(p: &str) -> Result<u16, EndpointError> {
    if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
        return Err(EndpointError(format!("port {p:?} is not a number")));
    }
    p.parse::<u16>()
        .map_err(|_| EndpointError(format!("port {p} is not in 0..65535")))
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.network)?;
        if self.explicit_prefix {
            write!(f, "/{}", self.prefix_len)?;
        }
        if let Some((lo, hi)) = self.ports {
            write!(f, ":<{lo}-{hi}>")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(s: &str) -> Endpoint {
        s.parse().unwrap()
    }

    #[test]
    fn parses_upstream_examples() {
        assert_eq!(ep("10.76.1.3").to_string(), "10.76.1.3");
        assert_eq!(
            ep("10.80.0.0/16:<10000-20000>").ports(),
            Some((10000, 20000))
        );
        assert_eq!(ep("2001:db8::/32:<1-2>").prefix_len(), 32);
        assert_eq!(ep("2001:db8::1").prefix_len(), 128);
        assert_eq!(ep("1.2.3.4:<10000-20000>").prefix_len(), 32);
        assert_eq!(ep("10.1.2.3/8").to_string(), "10.0.0.0/8");
        assert_eq!(ep("0.0.0.0/0").to_string(), "0.0.0.0/0");
        assert_eq!(ep("::/0").to_string(), "::/0");
    }

    #[test]
    fn matching() {
        let e = ep("10.80.0.0/16:<10000-20000>");
        assert!(e.matches("10.80.3.4".parse().unwrap(), 10000));
        assert!(e.matches("10.80.3.4".parse().unwrap(), 0));
        assert!(!e.matches("10.80.3.4".parse().unwrap(), 9999));
        assert!(!e.matches("10.81.3.4".parse().unwrap(), 10000));
        assert!(e.contains("::ffff:10.80.0.1".parse().unwrap()));
        assert!(!e.contains("2001:db8::1".parse().unwrap()));
        assert!(ep("::/0").contains("2001:db8::1".parse().unwrap()));
        assert!(!ep("::/0").contains("1.2.3.4".parse().unwrap()));
    }

    #[test]
    fn rejects_bad_input() {
        for bad in [
            "",
            "10.0.0.0/33",
            "::/129",
            "foo",
            "1.2.3.4:<2-1>",
            "1.2.3.4:<1-70000>",
            "1.2.3.4:<a-b>",
            "1.2.3.4/",
            "1.2.3.4/-1",
            "1.2.3.4:80",
            "1.2.3.4:<80>",
            "1.2.3.4/+8",
        ] {
            assert!(bad.parse::<Endpoint>().is_err(), "{bad:?} parsed");
        }
    }
}
