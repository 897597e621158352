//! STRICT_DNS resolution (hickory, the system's resolv.conf and hosts file). A name the
//! DNS says does not exist (or has no address) admits nothing; a lookup that fails or
//! times out keeps the addresses last found, so a DNS hiccup does not cut off peers.

use std::net::IpAddr;
use std::time::Duration;

use hickory_resolver::TokioResolver;

/// How long one lookup may take.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(3);

/// The resolver of the control plane.
#[derive(Clone)]
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

    /// Looks up `names` concurrently (all together take one [`LOOKUP_TIMEOUT`] at most,
    /// not one each), in the order given.
    /// Names whose lookup failed are left out (their last addresses stay).
    pub(crate) async fn resolve_all(&self, names: Vec<String>) -> Vec<(String, Vec<IpAddr>)> {
        let mut set = tokio::task::JoinSet::new();
        for (i, name) in names.into_iter().enumerate() {
            let dns = self.clone();
            set.spawn(async move {
                let addrs = dns.resolve(&name).await;
                addrs.map(|a| (i, name, a))
            });
        }
        let mut out: Vec<(usize, String, Vec<IpAddr>)> =
            set.join_all().await.into_iter().flatten().collect();
        out.sort_by_key(|(i, _, _)| *i);
        out.into_iter().map(|(_, n, a)| (n, a)).collect()
    }

    /// The addresses of `name` (IPv4-mapped IPv6 as IPv4): empty when the name does not
    /// exist or has none, `None` when the lookup failed or timed out.
    pub(crate) async fn resolve(&self, name: &str) -> Option<Vec<IpAddr>> {
        let Some(r) = &self.resolver else {
            return Some(Vec::new());
        };
        match tokio::time::timeout(LOOKUP_TIMEOUT, r.lookup_ip(name)).await {
            Ok(Ok(l)) => {
                let mut v: Vec<IpAddr> = l.iter().map(|ip| ip.to_canonical()).collect();
                v.sort();
                v.dedup();
                Some(v)
            }
            Ok(Err(e)) if e.is_nx_domain() || e.is_no_records_found() => {
                tracing::debug!(target: "dns-resolver", name, error = %e, "no such name");
                Some(Vec::new())
            }
            Ok(Err(e)) => {
                tracing::warn!(target: "dns-resolver", name, error = %e, "lookup failed, keeping the last addresses");
                None
            }
            Err(_) => {
                tracing::warn!(target: "dns-resolver", name, "lookup timed out, keeping the last addresses");
                None
            }
        }
    }
}
