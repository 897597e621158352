//! Peer admission: a listener reaches only the endpoints of the clusters it routes to
//! (upstream `internal/router`, spec §5), and never the special ranges (loopback,
//! unspecified, multicast, link-local incl. cloud metadata at 169.254.169.254) unless a
//! cluster names them explicitly: an open `0.0.0.0/0` cluster does not open them.

use std::collections::HashMap;
use std::net::IpAddr;

use stunner_config::{ClusterConfig, ClusterType, Endpoint, StunnerConfig};

/// Ranges no peer may be in unless a cluster endpoint lies inside the range.
const SPECIAL: &[&str] = &[
    "127.0.0.0/8",
    "0.0.0.0/8",
    "224.0.0.0/4",
    "240.0.0.0/4",
    "169.254.0.0/16",
    "::1/128",
    "::/128",
    "ff00::/8",
    "fe80::/10",
];

fn special_ranges() -> Vec<Endpoint> {
    SPECIAL.iter().filter_map(|s| s.parse().ok()).collect()
}

/// One routed cluster.
#[derive(Debug, Clone)]
struct Cluster {
    name: String,
    /// STATIC endpoints.
    endpoints: Vec<Endpoint>,
    /// STRICT_DNS names; their resolved addresses live in `PeerPolicy::dns`.
    names: Vec<String>,
    /// `protocol: TCP`: its peers are reached by TCP allocations (RFC 6062).
    tcp: bool,
}

/// The peer policy of one listener.
#[derive(Debug, Clone, Default)]
pub struct PeerPolicy {
    clusters: Vec<Cluster>,
    dns: HashMap<String, Vec<IpAddr>>,
    special: Vec<Endpoint>,
}

impl PeerPolicy {
    /// The policy of listener `listener` in `config`: its routes, in route order.
    /// A route to a missing cluster admits nothing.
    pub fn for_listener(config: &StunnerConfig, listener: &str) -> Self {
        let routes = config
            .listener(listener)
            .map(|l| l.routes.clone())
            .unwrap_or_default();
        let clusters = routes
            .iter()
            .filter_map(|r| config.cluster(r))
            .map(Cluster::from_config)
            .collect();
        Self {
            clusters,
            dns: HashMap::new(),
            special: special_ranges(),
        }
    }

    /// A policy admitting exactly these STATIC endpoints, as one cluster `name`.
    pub fn from_endpoints(name: &str, endpoints: &[Endpoint]) -> Self {
        Self {
            clusters: vec![Cluster {
                name: name.to_string(),
                endpoints: endpoints.to_vec(),
                names: Vec::new(),
                tcp: false,
            }],
            dns: HashMap::new(),
            special: special_ranges(),
        }
    }

    /// The DNS names this policy needs resolved (STRICT_DNS clusters).
    pub fn dns_names(&self) -> impl Iterator<Item = &str> {
        self.clusters
            .iter()
            .flat_map(|c| c.names.iter().map(String::as_str))
    }

    /// Takes the addresses already known for the names this policy uses, so a config
    /// push does not refuse the peers of a STRICT_DNS cluster until the next lookup.
    pub fn seed_resolved(&mut self, known: &HashMap<String, Vec<IpAddr>>) {
        let names: Vec<String> = self.dns_names().map(str::to_string).collect();
        for n in names {
            if let Some(a) = known.get(&n) {
                self.dns.insert(n, a.clone());
            }
        }
    }

    /// Records the current addresses of a DNS name (an empty list admits nothing).
    pub fn set_resolved(&mut self, name: &str, addrs: Vec<IpAddr>) {
        self.dns.insert(name.to_string(), addrs);
    }

    /// The number of routed clusters (indexes of [`admit`](Self::admit)'s result).
    pub fn cluster_count(&self) -> usize {
        self.clusters.len()
    }

    /// The name of routed cluster `i`.
    pub fn cluster_name(&self, i: usize) -> &str {
        self.clusters.get(i).map_or("", |c| c.name.as_str())
    }

    /// The first routed cluster that admits `ip` (and `port`, unless it is 0), by
    /// index. Port 0 checks the address only, for permissions. Any cluster admits UDP
    /// peers, whatever its `protocol` (upstream v1.2.1 relays UDP only and ignores it).
    pub fn admit(&self, ip: IpAddr, port: u16) -> Option<usize> {
        self.admit_where(ip, port, |_| true)
    }

    /// [`admit`](Self::admit) for the peers of a TCP allocation (RFC 6062): only
    /// clusters with `protocol: TCP` admit them.
    pub fn admit_tcp(&self, ip: IpAddr, port: u16) -> Option<usize> {
        self.admit_where(ip, port, |c| c.tcp)
    }

    fn admit_where(&self, ip: IpAddr, port: u16, keep: impl Fn(&Cluster) -> bool) -> Option<usize> {
        let ip = ip.to_canonical();
        let special = self.special.iter().find(|r| r.contains(ip));
        self.clusters.iter().position(|c| {
            keep(c)
                && c.endpoints.iter().any(|e| {
                    e.matches(ip, port)
                        && special.is_none_or(|r| {
                            e.prefix_len() >= r.prefix_len() && r.contains(e.network())
                        })
                })
                || c.names.iter().any(|n| {
                    // A resolved address is an explicit /32 or /128: it may be special.
                    self.dns.get(n).is_some_and(|a| a.contains(&ip))
                })
        })
    }
}

impl Cluster {
    fn from_config(c: &ClusterConfig) -> Self {
        let (endpoints, names) = match c.cluster_type {
            ClusterType::Static => (c.static_endpoints(), Vec::new()),
            ClusterType::StrictDns => (Vec::new(), c.endpoints.clone()),
        };
        Self {
            name: c.name.clone(),
            endpoints,
            names,
            tcp: c.protocol == stunner_config::ClusterProtocol::Tcp,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(eps: &[&str]) -> PeerPolicy {
        let eps: Vec<Endpoint> = eps.iter().map(|e| e.parse().unwrap()).collect();
        PeerPolicy::from_endpoints("c", &eps)
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn open_cluster_does_not_open_special_ranges() {
        let p = policy(&["0.0.0.0/0", "::/0"]);
        assert_eq!(p.admit(ip("8.8.8.8"), 53), Some(0));
        assert_eq!(p.admit(ip("2001:db8::1"), 1), Some(0));
        for bad in [
            "127.0.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "169.254.169.254",
            "255.255.255.255",
            "::1",
            "::",
            "ff02::1",
            "fe80::1",
            "::ffff:127.0.0.1",
        ] {
            assert_eq!(p.admit(ip(bad), 1000), None, "{bad}");
        }
    }

    #[test]
    fn explicit_special_endpoints_open_them() {
        let p = policy(&["127.0.0.0/8"]);
        assert_eq!(p.admit(ip("127.0.0.1"), 5), Some(0));
        let p = policy(&["127.0.0.1:<1000-2000>"]);
        assert_eq!(p.admit(ip("127.0.0.1"), 1500), Some(0));
        assert_eq!(p.admit(ip("127.0.0.1"), 999), None);
        assert_eq!(p.admit(ip("127.0.0.1"), 0), Some(0));
        assert_eq!(p.admit(ip("127.0.0.2"), 1500), None);
    }

    #[test]
    fn strict_dns_uses_resolved_sets() {
        let c = StunnerConfig::from_str_with_env(
            "version: v1\nauth: {type: none}\nlisteners: [{name: l, routes: [d]}]\nclusters: [{name: d, type: STRICT_DNS, endpoints: [media.local]}]",
            &|_: &str| None,
        )
        .unwrap();
        let mut p = PeerPolicy::for_listener(&c, "l");
        assert_eq!(p.dns_names().collect::<Vec<_>>(), vec!["media.local"]);
        assert_eq!(p.admit(ip("10.0.0.5"), 1), None);
        p.set_resolved("media.local", vec![ip("10.0.0.5")]);
        assert_eq!(p.admit(ip("10.0.0.5"), 1), Some(0));
        assert_eq!(p.admit(ip("10.0.0.6"), 1), None);
        assert_eq!(p.cluster_name(0), "d");
    }
}
