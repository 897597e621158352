//! The `--dry-run` summary: what a config would run, secrets masked.

use std::fmt::Write;

use stunner_config::StunnerConfig;
use stunner_turn::ServerConfig;

/// A human-readable plan of `c`.
pub fn summary(
    c: &StunnerConfig,
    udp_threads: usize,
    pod_addresses: &[std::net::IpAddr],
) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "config OK: {}", c.admin.name);
    let _ = writeln!(s, "  auth: {}", c.auth);
    match c.admin.healthcheck() {
        Some(h) => {
            let _ = writeln!(
                s,
                "  health-check: {}:{} (/live /ready /status)",
                if h.host.is_empty() { "*" } else { &h.host },
                h.port
            );
        }
        None => {
            let _ = writeln!(s, "  health-check: disabled");
        }
    }
    for l in &c.listeners {
        let workers = if l.protocol.is_datagram() {
            udp_threads.max(1)
        } else {
            1
        };
        let relay = ServerConfig::for_listener(c, &l.name).map_or_else(
            |e| format!("INVALID: {e}"),
            |sc| match sc.with_pod_addresses(pod_addresses) {
                sc @ ServerConfig {
                    alternate_relay_ip: Some(alt),
                    ..
                } => format!("{} (and {alt})", sc.relay_ip),
                sc => sc.relay_ip.to_string(),
            },
        );
        let _ = writeln!(
            s,
            "  listener {:?}: {} on port {} ({} worker(s)), relay address {}, ICE URI {}, routes [{}]",
            l.name,
            l.protocol,
            l.port,
            workers,
            relay,
            l.ice_uri(),
            l.routes.join(", "),
        );
    }
    for cl in &c.clusters {
        let _ = writeln!(
            s,
            "  cluster {:?}: {} {} [{}]",
            cl.name,
            cl.cluster_type,
            cl.protocol,
            cl.endpoints.join(", ")
        );
    }
    s
}
