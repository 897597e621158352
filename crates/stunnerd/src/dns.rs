//! STRICT_DNS resolution (hickory, the system's resolv.conf and hosts file). A name that
//! does not resolve in time gets an empty address set: it admits nothing until it does.

use std::net::IpAddr;
use std::time::Duration;

use hickory_resolver::TokioResolver;

/// How long one lookup may take.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(3);

/// The resolver of the control plane.
pub(crate) struct Dns {
    resolver: Option<TokioResolver>,
}

impl Dns {
    pub(crate) fn new() -> Self {
        let resolver = TokioResolver::builder_tokio()
            .and_then(|b| b.build())
            .map_err(|e| tracing::warn!(target: "dns-resolver", error = %e, "no DNS resolver: STRICT_DNS clusters admit nothing"))
            .ok();
        Self { resolver }
    }

    /// The addresses of `name` (IPv4-mapped IPv6 as IPv4), empty on failure.
    pub(crate) async fn resolve(&self, name: &str) -> Vec<IpAddr> {
        let Some(r) = &self.resolver else {
            return Vec::new();
        };
        match tokio::time::timeout(LOOKUP_TIMEOUT, r.lookup_ip(name)).await {
            Ok(Ok(l)) => {
                let mut v: Vec<IpAddr> = l.iter().map(|ip| ip.to_canonical()).collect();
                v.sort();
                v.dedup();
                v
            }
            Ok(Err(e)) => {
                tracing::debug!(target: "dns-resolver", name, error = %e, "lookup failed");
                Vec::new()
            }
            Err(_) => {
                tracing::debug!(target: "dns-resolver", name, "lookup timed out");
                Vec::new()
            }
        }
    }
}
