//! Cluster DNS: `<service>.<namespace>.svc.<domain>` A records (ClusterIP, or the ready
//! endpoints of a headless Service). Everything else is NXDOMAIN: nothing is forwarded,
//! so no query leaves the test's namespaces.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use crate::netns::Hub;
use crate::proxy::{Catalog, Shared};

/// Answers queries on `addr:53` in the node's namespace, forever.
pub async fn serve(hub: Hub, shared: Shared, addr: IpAddr, domain: String) -> std::io::Result<()> {
    let sock = hub.udp(SocketAddr::new(addr, 53)).await?;
    let mut buf = [0u8; 1500];
    loop {
        let (n, from) = sock.recv_from(&mut buf).await?;
        let reply = {
            let Ok(cat) = shared.catalog.read() else {
                continue;
            };
            answer(&buf[..n], |name| resolve(&cat, name, &domain))
        };
        if let Some(r) = reply {
            let _ = sock.send_to(&r, from).await;
        }
    }
}

/// The A records of `name`, or `None` when the name does not exist.
fn resolve(cat: &Catalog, name: &str, domain: &str) -> Option<Vec<Ipv4Addr>> {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    let rest = name.strip_suffix(&format!(".svc.{domain}"))?;
    let (svc, ns) = rest.split_once('.')?;
    let s = cat.services.get(&(ns.to_string(), svc.to_string()))?;
    let spec = s.spec.as_ref()?;
    match spec.cluster_ip.as_deref() {
        Some("None") | None => {
            let mut ips = Vec::new();
            for ((sns, _), sl) in &cat.slices {
                if sns == ns
                    && sl
                        .metadata
                        .labels
                        .as_ref()
                        .and_then(|l| l.get("kubernetes.io/service-name"))
                        .map(String::as_str)
                        == Some(svc)
                {
                    for e in sl.endpoints.iter().flatten() {
                        if e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true) {
                            ips.extend(
                                e.addresses
                                    .iter()
                                    .filter_map(|a| a.parse::<Ipv4Addr>().ok()),
                            );
                        }
                    }
                }
            }
            Some(ips)
        }
        Some(ip) => Some(ip.parse().ok().into_iter().collect()),
    }
}

/// Builds the response to one query (RFC 1035 §4.1), `None` for what is not a query.
fn answer(q: &[u8], lookup: impl Fn(&str) -> Option<Vec<Ipv4Addr>>) -> Option<Vec<u8>> {
    if q.len() < 12 || q[2] & 0x80 != 0 || u16::from_be_bytes([q[4], q[5]]) != 1 {
        return None;
    }
    // The question: labels up to the root, then QTYPE and QCLASS.
    let mut i = 12;
    let mut labels = Vec::new();
    loop {
        let len = *q.get(i)? as usize;
        i += 1;
        if len == 0 {
            break;
        }
        if len & 0xC0 != 0 {
            return None;
        }
        labels.push(String::from_utf8_lossy(q.get(i..i + len)?).to_string());
        i += len;
    }
    let qtype = u16::from_be_bytes([*q.get(i)?, *q.get(i + 1)?]);
    let end = i + 4;
    if q.len() < end {
        return None;
    }
    let name = labels.join(".");
    let found = lookup(&name);
    let mut r = Vec::with_capacity(end + 64);
    r.extend_from_slice(&q[..2]);
    let rd = q[2] & 0x01;
    r.push(0x84 | rd); // QR, AA, RD copied
    r.push(if found.is_some() { 0x80 } else { 0x83 }); // RA; NOERROR or NXDOMAIN
    let answers: Vec<Ipv4Addr> = match (&found, qtype) {
        (Some(ips), 1 | 255) => ips.clone(),
        _ => Vec::new(),
    };
    r.extend_from_slice(&[0, 1]);
    r.extend_from_slice(&(answers.len() as u16).to_be_bytes());
    r.extend_from_slice(&[0, 0, 0, 0]);
    r.extend_from_slice(&q[12..end]);
    for ip in answers {
        r.extend_from_slice(&[0xC0, 0x0C, 0, 1, 0, 1, 0, 0, 0, 5, 0, 4]);
        r.extend_from_slice(&ip.octets());
    }
    Some(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(name: &str, qtype: u16) -> Vec<u8> {
        let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for l in name.split('.') {
            q.push(l.len() as u8);
            q.extend_from_slice(l.as_bytes());
        }
        q.push(0);
        q.extend_from_slice(&qtype.to_be_bytes());
        q.extend_from_slice(&[0, 1]);
        q
    }

    #[test]
    fn answers_known_names_and_refuses_the_rest() {
        let lookup =
            |n: &str| (n == "a.b.svc.cluster.local").then(|| vec![Ipv4Addr::new(10, 96, 0, 7)]);
        let r = answer(&query("a.b.svc.cluster.local", 1), lookup).unwrap_or_default();
        assert_eq!(&r[..2], &[0x12, 0x34]);
        assert_eq!(r[3] & 0x0F, 0, "NOERROR");
        assert_eq!(u16::from_be_bytes([r[6], r[7]]), 1, "one answer");
        assert_eq!(&r[r.len() - 4..], &[10, 96, 0, 7]);
        let r = answer(&query("a.b.svc.cluster.local", 28), lookup).unwrap_or_default();
        assert_eq!((r[3] & 0x0F, r[7]), (0, 0), "AAAA of a known name: no data");
        let r = answer(&query("example.org", 1), lookup).unwrap_or_default();
        assert_eq!(r[3] & 0x0F, 3, "NXDOMAIN");
        assert!(answer(&[0; 5], lookup).is_none());
    }
}
