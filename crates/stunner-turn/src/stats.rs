//! Counters kept by a server: drops by reason and traffic per routed cluster. Read them
//! with [`Server::stats`](crate::Server::stats); no event is emitted per packet.

use crate::event::DropReason;
use crate::policy::PeerPolicy;

/// Packets and bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counter {
    /// Packets.
    pub packets: u64,
    /// Bytes (payload).
    pub bytes: u64,
}

impl Counter {
    fn add(&mut self, bytes: usize) {
        self.packets += 1;
        self.bytes += bytes as u64;
    }
}

/// Traffic of one cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterStats {
    /// The cluster name.
    pub name: String,
    /// Client to peer.
    pub to_peer: Counter,
    /// Peer to client.
    pub from_peer: Counter,
}

/// A server's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    drops: [u64; DropReason::ALL.len()],
    /// Per routed cluster, in route order.
    pub clusters: Vec<ClusterStats>,
}

impl Stats {
    pub(crate) fn for_policy(p: &PeerPolicy) -> Self {
        let mut s = Self::default();
        s.rebind(p);
        s
    }

    /// Re-aligns the cluster counters with a new policy, keeping the counts of
    /// clusters that stay.
    pub(crate) fn rebind(&mut self, p: &PeerPolicy) {
        let old = std::mem::take(&mut self.clusters);
        self.clusters = (0..p.cluster_count())
            .map(|i| {
                let name = p.cluster_name(i);
                old.iter()
                    .find(|c| c.name == name)
                    .cloned()
                    .unwrap_or_else(|| ClusterStats {
                        name: name.to_string(),
                        ..Default::default()
                    })
            })
            .collect();
    }

    pub(crate) fn count_drop(&mut self, r: DropReason) {
        if let Some(i) = DropReason::ALL.iter().position(|x| *x == r) {
            self.drops[i] += 1;
        }
    }

    pub(crate) fn count_to_peer(&mut self, cluster: usize, bytes: usize) {
        if let Some(c) = self.clusters.get_mut(cluster) {
            c.to_peer.add(bytes);
        }
    }

    pub(crate) fn count_from_peer(&mut self, cluster: usize, bytes: usize) {
        if let Some(c) = self.clusters.get_mut(cluster) {
            c.from_peer.add(bytes);
        }
    }

    /// Datagrams dropped for `reason`.
    pub fn drops(&self, reason: DropReason) -> u64 {
        DropReason::ALL
            .iter()
            .position(|x| *x == reason)
            .map_or(0, |i| self.drops[i])
    }
}
