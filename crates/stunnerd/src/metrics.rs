//! Prometheus metrics: upstream's seven `stunner_*` metrics with their labels, plus ours
//! (drops by reason, auth failures by reason, permission denials). Values are read
//! from counters the workers keep; the scrape encodes a snapshot. The format is the
//! classic Prometheus text exposition, which every scraper reads.

use std::collections::BTreeMap;

use std::fmt::Write as _;

/// Packets and bytes each way: rx into stunnerd (from clients at a listener, from peers
/// of a cluster), tx out of it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Datagrams (or stream reads) received.
    pub rx_packets: u64,
    /// Datagrams (or stream writes) sent.
    pub tx_packets: u64,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
}

impl Traffic {
    /// Adds another's counts.
    pub fn add(&mut self, o: &Self) {
        self.rx_packets += o.rx_packets;
        self.tx_packets += o.tx_packets;
        self.rx_bytes += o.rx_bytes;
        self.tx_bytes += o.tx_bytes;
    }

    fn packets(&self) -> (u64, u64) {
        (self.rx_packets, self.tx_packets)
    }

    fn bytes(&self) -> (u64, u64) {
        (self.rx_bytes, self.tx_bytes)
    }
}

/// Counters of one listener.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListenerSnapshot {
    /// Listener name.
    pub name: String,
    /// Open connections (UDP: sockets).
    pub connections: u64,
    /// Connections ever opened.
    pub connections_total: u64,
    /// Traffic on the listener sockets.
    pub traffic: Traffic,
    /// The peer connections of its TCP allocations (RFC 6062).
    pub tcp_relay: TcpRelayCounters,
}

/// The peer connections of a listener's TCP allocations (RFC 6062), for `/status` and
/// the metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TcpRelayCounters {
    /// Open peer connections.
    pub connections: u64,
    /// Peer connections ever opened.
    pub connections_total: u64,
    /// Bytes relayed from the peers.
    pub bytes_from_peers: u64,
    /// Bytes relayed to the peers.
    pub bytes_to_peers: u64,
}

/// Upper bounds (seconds) of the allocation lifetime histogram buckets.
pub const LIFETIME_BUCKETS: [f64; 9] = [1.0, 5.0, 30.0, 60.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0];

/// A histogram of allocation lifetimes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histogram {
    /// Observations at most each bound of [`LIFETIME_BUCKETS`] (not cumulative).
    pub buckets: [u64; 9],
    /// Observations above the last bound.
    pub over: u64,
    /// Sum of the observations, seconds.
    pub sum: f64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&mut self, secs: f64) {
        match LIFETIME_BUCKETS.iter().position(|b| secs <= *b) {
            Some(i) => self.buckets[i] += 1,
            None => self.over += 1,
        }
        self.sum += secs;
    }

    /// Adds another histogram's observations.
    pub fn merge(&mut self, o: &Self) {
        for (a, b) in self.buckets.iter_mut().zip(o.buckets) {
            *a += b;
        }
        self.over += o.over;
        self.sum += o.sum;
    }

    fn count(&self) -> u64 {
        self.buckets.iter().sum::<u64>() + self.over
    }
}

/// Everything a scrape reports.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// Live allocations.
    pub allocations: u64,
    /// Per listener.
    pub listeners: Vec<ListenerSnapshot>,
    /// Per cluster: traffic from (rx) and to (tx) its peers.
    pub clusters: BTreeMap<String, Traffic>,
    /// Dropped datagrams by reason.
    pub drops: BTreeMap<&'static str, u64>,
    /// Auth failures by reason.
    pub auth_failures: BTreeMap<&'static str, u64>,
    /// CreatePermission/ChannelBind refused by the peer policy.
    pub permission_denials: u64,
    /// Lifetimes of ended allocations.
    pub lifetimes: Histogram,
}

/// Writes one metric family in the classic Prometheus text format (0.0.4).
///
/// Not OpenMetrics: upstream exposes both a gauge `stunner_listener_connections` and a
/// counter `stunner_listener_connections_total`, which collide as OpenMetrics families.
/// That is also why this is not `prometheus-client` (0.24): it writes OpenMetrics only,
/// so those two become two families of one name, `# TYPE stunner_listener_connections`
/// gauge and counter, and the reference OpenMetrics parser (Python `prometheus_client`)
/// rejects the scrape ("Received metadata after samples"). This output passes
/// `promtool check metrics`.
fn family(out: &mut String, name: &str, kind: &str, help: &str, samples: &[(String, u64)]) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    for (labels, v) in samples {
        let _ = writeln!(out, "{name}{labels} {v}");
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn labels(pairs: &[(&str, &str)]) -> String {
    if pairs.is_empty() {
        return String::new();
    }
    let inner: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
        .collect();
    format!("{{{}}}", inner.join(","))
}

/// Encodes a snapshot in the Prometheus text format.
pub fn render(s: &Snapshot) -> String {
    let mut out = String::new();
    family(
        &mut out,
        "stunner_allocations_active",
        "gauge",
        "Number of active allocations.",
        &[(String::new(), s.allocations)],
    );
    let per_listener = |f: &dyn Fn(&ListenerSnapshot) -> Vec<(String, u64)>| -> Vec<(String, u64)> {
        s.listeners.iter().flat_map(f).collect()
    };
    family(
        &mut out,
        "stunner_listener_connections",
        "gauge",
        "Number of active downstream connections at a listener.",
        &per_listener(&|l| vec![(labels(&[("name", &l.name)]), l.connections)]),
    );
    family(
        &mut out,
        "stunner_listener_connections_total",
        "counter",
        "Number of downstream connections at a listener.",
        &per_listener(&|l| vec![(labels(&[("name", &l.name)]), l.connections_total)]),
    );
    family(
        &mut out,
        "stunner_tcp_relay_connections",
        "gauge",
        "Open peer connections of TCP allocations (RFC 6062) at a listener.",
        &per_listener(&|l| vec![(labels(&[("name", &l.name)]), l.tcp_relay.connections)]),
    );
    family(
        &mut out,
        "stunner_tcp_relay_connections_total",
        "counter",
        "Peer connections of TCP allocations (RFC 6062) at a listener.",
        &per_listener(&|l| vec![(labels(&[("name", &l.name)]), l.tcp_relay.connections_total)]),
    );
    family(
        &mut out,
        "stunner_tcp_relay_bytes_total",
        "counter",
        "Bytes relayed over TCP allocations, received from (rx) or sent to (tx) peers.",
        &per_listener(&|l| {
            vec![
                (
                    labels(&[("name", &l.name), ("direction", "rx")]),
                    l.tcp_relay.bytes_from_peers,
                ),
                (
                    labels(&[("name", &l.name), ("direction", "tx")]),
                    l.tcp_relay.bytes_to_peers,
                ),
            ]
        }),
    );
    type Pick = fn(&Traffic) -> (u64, u64);
    let kinds: [(&str, &str, Pick); 2] = [
        ("packets", "datagrams", Traffic::packets),
        ("bytes", "bytes", Traffic::bytes),
    ];
    for (unit, what, pick) in kinds {
        let metric = format!("stunner_listener_{unit}_total");
        family(
            &mut out,
            &metric,
            "counter",
            &format!("Number of {what} sent or received at a listener."),
            &per_listener(&|l| {
                let (rx, tx) = pick(&l.traffic);
                vec![
                    (labels(&[("name", &l.name), ("direction", "rx")]), rx),
                    (labels(&[("name", &l.name), ("direction", "tx")]), tx),
                ]
            }),
        );
    }
    for (unit, what, pick) in kinds {
        let metric = format!("stunner_cluster_{unit}_total");
        let samples: Vec<(String, u64)> = s
            .clusters
            .iter()
            .flat_map(|(n, c)| {
                let (rx, tx) = pick(c);
                [
                    (labels(&[("name", n), ("direction", "rx")]), rx),
                    (labels(&[("name", n), ("direction", "tx")]), tx),
                ]
            })
            .collect();
        family(
            &mut out,
            &metric,
            "counter",
            &format!("Number of {what} sent to or received from a cluster."),
            &samples,
        );
    }
    let by_reason = |m: &BTreeMap<&'static str, u64>| -> Vec<(String, u64)> {
        m.iter()
            .map(|(r, n)| (labels(&[("reason", r)]), *n))
            .collect()
    };
    family(
        &mut out,
        "stunner_dropped_packets_total",
        "counter",
        "Datagrams dropped, by reason.",
        &by_reason(&s.drops),
    );
    family(
        &mut out,
        "stunner_auth_failures_total",
        "counter",
        "Requests that failed authentication, by reason.",
        &by_reason(&s.auth_failures),
    );
    family(
        &mut out,
        "stunner_permission_denials_total",
        "counter",
        "Peers refused by the cluster policy.",
        &[(String::new(), s.permission_denials)],
    );
    let name = "stunner_allocation_duration_seconds";
    let _ = writeln!(out, "# HELP {name} Lifetimes of ended allocations.");
    let _ = writeln!(out, "# TYPE {name} histogram");
    let mut cumulative = 0;
    for (b, n) in LIFETIME_BUCKETS.iter().zip(s.lifetimes.buckets) {
        cumulative += n;
        let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {cumulative}");
    }
    let total = s.lifetimes.count();
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {total}");
    let _ = writeln!(out, "{name}_sum {}", s.lifetimes.sum);
    let _ = writeln!(out, "{name}_count {total}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_names_and_labels() {
        let mut s = Snapshot {
            allocations: 3,
            permission_denials: 2,
            ..Default::default()
        };
        s.listeners.push(ListenerSnapshot {
            name: "ns/gw/udp".into(),
            connections: 2,
            connections_total: 5,
            traffic: Traffic {
                rx_packets: 10,
                tx_packets: 11,
                rx_bytes: 1000,
                tx_bytes: 1100,
            },
            tcp_relay: TcpRelayCounters {
                connections: 1,
                connections_total: 4,
                bytes_from_peers: 600,
                bytes_to_peers: 700,
            },
        });
        s.clusters.insert(
            "ns/media".into(),
            Traffic {
                rx_packets: 1,
                tx_packets: 2,
                rx_bytes: 3,
                tx_bytes: 4,
            },
        );
        s.drops.insert("policy_denied", 7);
        s.lifetimes.observe(0.5);
        s.lifetimes.observe(400.0);
        s.lifetimes.observe(10_000.0);
        let t = render(&s);
        for line in [
            "stunner_allocations_active 3",
            "stunner_listener_connections{name=\"ns/gw/udp\"} 2",
            "stunner_listener_connections_total{name=\"ns/gw/udp\"} 5",
            "stunner_listener_packets_total{name=\"ns/gw/udp\",direction=\"rx\"} 10",
            "stunner_listener_bytes_total{name=\"ns/gw/udp\",direction=\"tx\"} 1100",
            "stunner_tcp_relay_connections{name=\"ns/gw/udp\"} 1",
            "stunner_tcp_relay_connections_total{name=\"ns/gw/udp\"} 4",
            "stunner_tcp_relay_bytes_total{name=\"ns/gw/udp\",direction=\"rx\"} 600",
            "stunner_tcp_relay_bytes_total{name=\"ns/gw/udp\",direction=\"tx\"} 700",
            "stunner_cluster_packets_total{name=\"ns/media\",direction=\"tx\"} 2",
            "stunner_cluster_bytes_total{name=\"ns/media\",direction=\"rx\"} 3",
            "stunner_dropped_packets_total{reason=\"policy_denied\"} 7",
            "stunner_permission_denials_total 2",
            "stunner_allocation_duration_seconds_bucket{le=\"1\"} 1",
            "stunner_allocation_duration_seconds_bucket{le=\"600\"} 2",
            "stunner_allocation_duration_seconds_bucket{le=\"+Inf\"} 3",
            "stunner_allocation_duration_seconds_count 3",
        ] {
            assert!(t.contains(line), "missing {line:?} in\n{t}");
        }
    }
}
