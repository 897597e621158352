//! Channels the IO layer may relay in the kernel (`admin.offload_engine`).
//!
//! A channel can be offloaded while ChannelData on it would be relayed unchanged by
//! [`Server::handle_channel_data`] and [`Server::handle_peer`]: on a datagram listener,
//! bound and unexpired (RFC 8656 §12), with an unexpired permission for the peer's
//! address (§9), to a peer the routed clusters admit. The core tells the IO layer when a
//! channel starts and stops meeting that: [`Output::OffloadUp`] and
//! [`Output::OffloadDown`], only while offload is on ([`Server::set_offload`]). Ups may
//! repeat (a refresh); the IO layer treats them as idempotent.

use std::net::SocketAddr;
use std::time::Instant;

use crate::server::{Output, Server};
use crate::transport::{FiveTuple, TransportKind};

/// A channel as the kernel relays it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OffloadChannel {
    /// The client's five-tuple on the listener.
    pub client: FiveTuple,
    /// The channel number.
    pub channel: u16,
    /// The allocation's relayed address of the peer's family.
    pub relay: SocketAddr,
    /// The peer.
    pub peer: SocketAddr,
    /// The index of the cluster that admits the peer (for its metrics).
    pub cluster: usize,
}

impl Server {
    /// Turns offload reporting on or off. Turning it on reports every channel that can
    /// be offloaded now; turning it off reports nothing (the IO layer drops its entries).
    pub fn set_offload(&mut self, on: bool, now: Instant) {
        let was = self.offload;
        self.offload = on && self.config.transport == TransportKind::Datagram;
        if self.offload && !was {
            self.resync_offload(now);
        }
    }

    /// Whether offload reporting is on.
    pub fn offload(&self) -> bool {
        self.offload
    }

    /// Reports every channel again, up or down, after something that may have changed
    /// which peers are admitted (a config, resolved DNS names).
    pub fn resync_offload(&mut self, now: Instant) {
        if !self.offload {
            return;
        }
        let all: Vec<FiveTuple> = self.allocations.keys().copied().collect();
        for ft in all {
            self.report_channels(ft, now, |_| true);
        }
    }

    /// Reports the channels of `ft`'s allocation whose peer `pick` selects: up if they
    /// can be offloaded at `now`, down otherwise.
    pub(crate) fn report_channels(
        &mut self,
        ft: FiveTuple,
        now: Instant,
        pick: impl Fn(SocketAddr) -> bool,
    ) {
        if !self.offload {
            return;
        }
        let Some(a) = self.allocations.get(&ft) else {
            return;
        };
        let mut out = Vec::new();
        for (&channel, c) in &a.channels {
            if !pick(c.peer) {
                continue;
            }
            let Some(relay) = a.relay_for(c.peer.ip()) else {
                continue;
            };
            let admitted = self.config.policy.admit(c.peer.ip(), c.peer.port());
            let ch = |cluster| OffloadChannel {
                client: ft,
                channel,
                relay,
                peer: c.peer,
                cluster,
            };
            match admitted {
                Some(cluster) if c.expiry > now && a.permitted(c.peer.ip(), now) => {
                    out.push(Output::OffloadUp(ch(cluster)));
                }
                _ => out.push(Output::OffloadDown(ch(admitted.unwrap_or(usize::MAX)))),
            }
        }
        self.outputs.extend(out);
    }

    /// Reports a channel that is going away (expired, or its allocation deleted).
    pub(crate) fn report_gone(
        &mut self,
        client: FiveTuple,
        channel: u16,
        relay: SocketAddr,
        peer: SocketAddr,
    ) {
        if self.offload {
            self.outputs.push_back(Output::OffloadDown(OffloadChannel {
                client,
                channel,
                relay,
                peer,
                cluster: usize::MAX,
            }));
        }
    }
}
