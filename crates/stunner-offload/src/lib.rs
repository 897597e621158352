//! Kernel offload of TURN ChannelData relaying (`admin.offload_engine: TC|XDP|Auto`): a
//! TC ingress eBPF program (`bpf/channeldata.bpf.c`) relays the datagrams of offloaded
//! channels both ways without waking stunnerd, an XDP program (`bpf/xdp.h`, same maps)
//! does it earlier where it can and hands the rest to TC, and this crate loads them,
//! attaches them to the chosen interfaces and keeps their maps in step with stunnerd's
//! channels.
//!
//! Only what the program can finish is offloaded: UDP over IPv4 or IPv6, unpadded ChannelData
//! on bound channels with valid permissions, to peers the routed clusters admit. What
//! is not in the maps goes up to stunnerd unchanged. See docs/OFFLOAD.md.

mod route;
mod xdp;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use aya::maps::{HashMap as BpfHashMap, MapData, PerCpuArray};
use aya::programs::{SchedClassifier, TcAttachType, Xdp, XdpFlags, tc};

/// What can go wrong; every variant says what to check.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The binary was built without the program (no clang at build time).
    #[error(
        "this stunnerd was built without the eBPF program (clang -target bpf was missing at build time)"
    )]
    NotBuilt,
    /// Loading into the kernel failed (capabilities, kernel version, verifier).
    #[error("cannot load the eBPF program: {0}")]
    Load(String),
    /// Attaching to an interface failed.
    #[error("cannot attach the eBPF program to {0}: {1}")]
    Attach(String, String),
    /// The interfaces could not be listed, or none was left to attach to.
    #[error("interfaces: {0}")]
    Interfaces(String),
    /// No route to an address.
    #[error("no route to {0}: {1}")]
    Route(IpAddr, String),
    /// A map operation failed.
    #[error("eBPF map {0}: {1}")]
    Map(&'static str, String),
}

// The ELF parser needs the object 8-byte aligned, which include_bytes! does not give.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/channeldata.bpf.o"));

/// The key of `down` (client to peer; `down6` for IPv6, N = 16): as the datagram
/// arrives, network byte order.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct DownKey<const N: usize> {
    client_ip: [u8; N],
    listener_ip: [u8; N],
    client_port: [u8; 2],
    listener_port: [u8; 2],
    channel: [u8; 2],
    pad: u16,
}

#[repr(C)]
#[derive(Clone, Copy, Debug)]
struct DownVal<const N: usize> {
    relay_ip: [u8; N],
    peer_ip: [u8; N],
    relay_port: [u8; 2],
    peer_port: [u8; 2],
    stat: u32,
    ifindex: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct UpKey<const N: usize> {
    peer_ip: [u8; N],
    relay_ip: [u8; N],
    peer_port: [u8; 2],
    relay_port: [u8; 2],
}

#[repr(C)]
#[derive(Clone, Copy, Debug)]
struct UpVal<const N: usize> {
    listener_ip: [u8; N],
    client_ip: [u8; N],
    listener_port: [u8; 2],
    client_port: [u8; 2],
    channel: [u8; 2],
    pad: u16,
    stat: u32,
    ifindex: u32,
}

/// Packets and payload bytes relayed by the kernel for one direction of a channel.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counter {
    /// Datagrams.
    pub packets: u64,
    /// Payload bytes (without the ChannelData header).
    pub bytes: u64,
}

// SAFETY: plain `repr(C)` structs of integers without padding, laid out as the
// program's (`bpf/channeldata.bpf.c`); any bit pattern is valid.
#[allow(unsafe_code)]
unsafe impl<const N: usize> aya::Pod for DownKey<N> {}
#[allow(unsafe_code)]
unsafe impl<const N: usize> aya::Pod for DownVal<N> {}
#[allow(unsafe_code)]
unsafe impl<const N: usize> aya::Pod for UpKey<N> {}
#[allow(unsafe_code)]
unsafe impl<const N: usize> aya::Pod for UpVal<N> {}
#[allow(unsafe_code)]
unsafe impl aya::Pod for Counter {}

/// A channel to offload: the client's 5-tuple on a UDP listener, its channel number,
/// and the relay/peer pair it stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Channel {
    /// The client, as the listener sees it.
    pub client: SocketAddr,
    /// The listener address the client sends to (a specific address, not a wildcard).
    pub listener: SocketAddr,
    /// The channel number.
    pub channel: u16,
    /// The allocation's relayed address.
    pub relay: SocketAddr,
    /// The peer.
    pub peer: SocketAddr,
}

/// An address as `N` bytes: IPv4 for 4, IPv6 for 16 (checked by [`Channel::family`]).
fn octets<const N: usize>(ip: IpAddr) -> [u8; N] {
    let mut out = [0u8; N];
    match ip {
        IpAddr::V4(a) if N == 4 => out.copy_from_slice(&a.octets()),
        IpAddr::V6(a) if N == 16 => out.copy_from_slice(&a.octets()),
        _ => {}
    }
    out
}

impl Channel {
    /// IPv6 if every address is, IPv4 if every address is; `None` for a mix (the
    /// program does not translate between families).
    fn family(&self) -> Option<bool> {
        let v6 = [self.client, self.listener, self.relay, self.peer].map(|a| a.is_ipv6());
        v6.iter().all(|&x| x == v6[0]).then_some(v6[0])
    }

    fn down_key<const N: usize>(&self) -> DownKey<N> {
        DownKey {
            client_ip: octets(self.client.ip()),
            listener_ip: octets(self.listener.ip()),
            client_port: self.client.port().to_be_bytes(),
            listener_port: self.listener.port().to_be_bytes(),
            channel: self.channel.to_be_bytes(),
            pad: 0,
        }
    }

    fn up_key<const N: usize>(&self) -> UpKey<N> {
        UpKey {
            peer_ip: octets(self.peer.ip()),
            relay_ip: octets(self.relay.ip()),
            peer_port: self.peer.port().to_be_bytes(),
            relay_port: self.relay.port().to_be_bytes(),
        }
    }
}

/// The counters of one offloaded channel, both ways.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChannelCounters {
    /// Client to peer.
    pub to_peer: Counter,
    /// Peer to client.
    pub to_client: Counter,
}

/// Which hooks relay (`admin.offload_engine`, None aside).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// The TC program on every interface.
    Tc,
    /// The XDP program on every interface (native where the driver has it), the TC
    /// program behind it for what XDP passes on. Fails if XDP cannot load or attach.
    Xdp,
    /// TC on every interface, XDP (native only) on the NICs with forwarding on; never
    /// fails where TC loads.
    Auto,
}

/// Datagrams relayed by each program, each way.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PathCounters {
    /// By the XDP program, client to peer.
    pub xdp_to_peer: u64,
    /// By the XDP program, peer to client.
    pub xdp_to_client: u64,
    /// By the TC program, client to peer.
    pub tc_to_peer: u64,
    /// By the TC program, peer to client.
    pub tc_to_client: u64,
}

/// The two maps of one address family.
struct Maps<const N: usize> {
    down: BpfHashMap<MapData, DownKey<N>, DownVal<N>>,
    up: BpfHashMap<MapData, UpKey<N>, UpVal<N>>,
}

impl<const N: usize> Maps<N> {
    fn insert(
        &mut self,
        c: &Channel,
        slot: u32,
        to_peer: u32,
        to_client: u32,
    ) -> Result<(), Error> {
        let dv = DownVal {
            relay_ip: octets(c.relay.ip()),
            peer_ip: octets(c.peer.ip()),
            relay_port: c.relay.port().to_be_bytes(),
            peer_port: c.peer.port().to_be_bytes(),
            stat: 2 * slot,
            ifindex: to_peer,
        };
        let uv = UpVal {
            listener_ip: octets(c.listener.ip()),
            client_ip: octets(c.client.ip()),
            listener_port: c.listener.port().to_be_bytes(),
            client_port: c.client.port().to_be_bytes(),
            channel: c.channel.to_be_bytes(),
            pad: 0,
            stat: 2 * slot + 1,
            ifindex: to_client,
        };
        self.down
            .insert(c.down_key::<N>(), dv, 0)
            .map_err(|e| Error::Map("down", e.to_string()))?;
        if let Err(e) = self.up.insert(c.up_key::<N>(), uv, 0) {
            let _ = self.down.remove(&c.down_key::<N>());
            return Err(Error::Map("up", e.to_string()));
        }
        Ok(())
    }

    fn remove(&mut self, c: &Channel) {
        let _ = self.down.remove(&c.down_key::<N>());
        let _ = self.up.remove(&c.up_key::<N>());
    }
}

/// The loaded and attached program, and its maps.
pub struct Engine {
    // Dropping the Ebpf detaches the program (the links are owned by it).
    _ebpf: aya::Ebpf,
    down: Maps<4>,
    down6: Maps<16>,
    stats: PerCpuArray<MapData, Counter>,
    paths: PerCpuArray<MapData, u64>,
    /// Interfaces with the XDP program, and those left without it, with the reason.
    xdp: Vec<String>,
    xdp_skipped: Vec<(String, String)>,
    /// Offloaded channels and their pair of stat slots (down = 2i, up = 2i + 1).
    channels: HashMap<Channel, u32>,
    free_slots: Vec<u32>,
    next_slot: u32,
    interfaces: Vec<String>,
}

/// Entries per map (the program's MAX_ENTRIES).
pub const MAX_CHANNELS: usize = 65536;

impl Engine {
    /// Loads the programs of `mode` and attaches them to the ingress of `interfaces`
    /// (empty: every interface of this network namespace but loopback).
    pub fn start(mode: Mode, interfaces: &[String]) -> Result<Self, Error> {
        if cfg!(offload_unbuilt) || OBJECT.is_empty() {
            return Err(Error::NotBuilt);
        }
        let ifaces: Vec<String> = if interfaces.is_empty() {
            route::interfaces()?
                .into_iter()
                .filter(|i| i != "lo")
                .collect()
        } else {
            interfaces.to_vec()
        };
        if ifaces.is_empty() {
            return Err(Error::Interfaces("no interface to attach to".into()));
        }
        if let Some(bad) = ifaces.iter().find(|i| i.contains('\0') || i.len() > 15) {
            return Err(Error::Interfaces(format!("invalid interface name {bad:?}")));
        }
        let mut ebpf = aya::Ebpf::load(OBJECT).map_err(|e| Error::Load(e.to_string()))?;
        let prog: &mut SchedClassifier = ebpf
            .program_mut("stunner_channeldata")
            .ok_or_else(|| Error::Load("no program stunner_channeldata in the object".into()))?
            .try_into()
            .map_err(|e: aya::programs::ProgramError| Error::Load(e.to_string()))?;
        prog.load().map_err(|e| Error::Load(verifier_tail(&e)))?;
        for i in &ifaces {
            // TCX (kernel 6.6+) needs no qdisc; older kernels attach through clsact.
            let _ = tc::qdisc_add_clsact(i);
            prog.attach(i, TcAttachType::Ingress)
                .map_err(|e| Error::Attach(i.clone(), e.to_string()))?;
        }
        let (xdp_on, xdp_skipped) = attach_xdp(&mut ebpf, mode, &ifaces)?;
        let take = |ebpf: &mut aya::Ebpf, name: &'static str| {
            ebpf.take_map(name)
                .ok_or_else(|| Error::Map(name, "not in the object".into()))
        };
        let map_err =
            |name: &'static str| move |e: aya::maps::MapError| Error::Map(name, e.to_string());
        let down = Maps {
            down: BpfHashMap::try_from(take(&mut ebpf, "down")?).map_err(map_err("down"))?,
            up: BpfHashMap::try_from(take(&mut ebpf, "up")?).map_err(map_err("up"))?,
        };
        let down6 = Maps {
            down: BpfHashMap::try_from(take(&mut ebpf, "down6")?).map_err(map_err("down6"))?,
            up: BpfHashMap::try_from(take(&mut ebpf, "up6")?).map_err(map_err("up6"))?,
        };
        let stats = PerCpuArray::try_from(take(&mut ebpf, "stats")?).map_err(map_err("stats"))?;
        let paths = PerCpuArray::try_from(take(&mut ebpf, "paths")?).map_err(map_err("paths"))?;
        let mut out: BpfHashMap<MapData, u32, u32> =
            BpfHashMap::try_from(take(&mut ebpf, "xdp_out")?).map_err(map_err("xdp_out"))?;
        // XDP redirects only into interfaces it runs on natively: those take XDP frames
        // (a generic-mode one may have no ndo_xdp_xmit, and the frame would be lost).
        for (i, _) in xdp_on.iter().filter(|(_, native)| *native) {
            let idx = route::ifindex(i).ok_or_else(|| Error::Interfaces(format!("no {i}")))?;
            out.insert(idx, 1, 0).map_err(map_err("xdp_out"))?;
        }
        let xdp_on: Vec<String> = xdp_on.into_iter().map(|(i, _)| i).collect();
        Ok(Self {
            _ebpf: ebpf,
            down,
            down6,
            stats,
            paths,
            xdp: xdp_on,
            xdp_skipped,
            channels: HashMap::new(),
            free_slots: Vec::new(),
            next_slot: 0,
            interfaces: ifaces,
        })
    }

    /// The interfaces the program is attached to.
    pub fn interfaces(&self) -> &[String] {
        &self.interfaces
    }

    /// The interfaces the XDP program is attached to (in front of TC).
    pub fn xdp_interfaces(&self) -> &[String] {
        &self.xdp
    }

    /// Notes on interfaces where XDP does not relay: those `Auto` left without it, and
    /// why; for explicit XDP, those whose forwarding is off (TC relays there).
    pub fn xdp_skipped(&self) -> &[(String, String)] {
        &self.xdp_skipped
    }

    /// Datagrams relayed by each program since the start.
    pub fn path_counters(&self) -> PathCounters {
        let sum = |i: u32| {
            self.paths
                .get(&i, 0)
                .map_or(0, |v| v.iter().copied().sum::<u64>())
        };
        PathCounters {
            xdp_to_peer: sum(0),
            xdp_to_client: sum(1),
            tc_to_peer: sum(2),
            tc_to_client: sum(3),
        }
    }

    /// Offloaded channels.
    pub fn len(&self) -> usize {
        self.channels.len()
    }

    /// Whether no channel is offloaded.
    pub fn is_empty(&self) -> bool {
        self.channels.is_empty()
    }

    /// Offloads a channel, or leaves it be if it already is. Its counters start at 0.
    pub fn upsert(&mut self, c: &Channel) -> Result<(), Error> {
        if self.channels.contains_key(c) {
            return Ok(());
        }
        if self.channels.len() >= MAX_CHANNELS {
            return Err(Error::Map("down", "full".into()));
        }
        let v6 = c.family().ok_or_else(|| {
            Error::Route(c.peer.ip(), "client and peer of different families".into())
        })?;
        let to_peer = route::egress_ifindex(c.peer.ip())?;
        let to_client = route::egress_ifindex(c.client.ip())?;
        let slot = self.free_slots.pop().unwrap_or_else(|| {
            self.next_slot += 1;
            self.next_slot - 1
        });
        for s in [2 * slot, 2 * slot + 1] {
            let zero = aya::maps::PerCpuValues::try_from(vec![Counter::default(); ncpus()])
                .map_err(|e| Error::Map("stats", e.to_string()))?;
            self.stats
                .set(s, zero, 0)
                .map_err(|e| Error::Map("stats", e.to_string()))?;
        }
        let inserted = if v6 {
            self.down6.insert(c, slot, to_peer, to_client)
        } else {
            self.down.insert(c, slot, to_peer, to_client)
        };
        if let Err(e) = inserted {
            self.free_slots.push(slot);
            return Err(e);
        }
        self.channels.insert(*c, slot);
        Ok(())
    }

    /// Stops offloading a channel (at once: the next datagram goes up to stunnerd).
    /// Returns its final counters.
    pub fn remove(&mut self, c: &Channel) -> Option<ChannelCounters> {
        let slot = self.channels.remove(c)?;
        if c.family() == Some(true) {
            self.down6.remove(c);
        } else {
            self.down.remove(c);
        }
        let last = self.slot_counters(slot);
        self.free_slots.push(slot);
        Some(last)
    }

    /// The counters of every offloaded channel, summed over the CPUs.
    pub fn counters(&self) -> Vec<(Channel, ChannelCounters)> {
        self.channels
            .iter()
            .map(|(c, slot)| (*c, self.slot_counters(*slot)))
            .collect()
    }

    fn slot_counters(&self, slot: u32) -> ChannelCounters {
        let sum = |i: u32| {
            self.stats.get(&i, 0).map_or(Counter::default(), |v| {
                v.iter().fold(Counter::default(), |a, c| Counter {
                    packets: a.packets + c.packets,
                    bytes: a.bytes + c.bytes,
                })
            })
        };
        ChannelCounters {
            to_peer: sum(2 * slot),
            to_client: sum(2 * slot + 1),
        }
    }
}

/// Loads the XDP program and attaches it where `mode` wants it; returns the interfaces
/// it is on (and whether in native mode) and notes on the others (with the reason).
#[allow(clippy::type_complexity)]
fn attach_xdp(
    ebpf: &mut aya::Ebpf,
    mode: Mode,
    ifaces: &[String],
) -> Result<(Vec<(String, bool)>, Vec<(String, String)>), Error> {
    let (mut on, mut skipped) = (Vec::new(), Vec::new());
    if mode == Mode::Tc {
        return Ok((on, skipped));
    }
    let wanted: Vec<&String> = match mode {
        Mode::Auto => ifaces
            .iter()
            .filter(|i| match xdp::auto_skips(i) {
                Some(why) => {
                    skipped.push(((*i).clone(), why.to_string()));
                    false
                }
                None => true,
            })
            .collect(),
        _ => ifaces.iter().collect(),
    };
    if wanted.is_empty() {
        return Ok((on, skipped));
    }
    let loaded = ebpf
        .program_mut("stunner_channeldata_xdp")
        .ok_or_else(|| Error::Load("no program stunner_channeldata_xdp in the object".into()))
        .and_then(|p| {
            let p: &mut Xdp = p
                .try_into()
                .map_err(|e: aya::programs::ProgramError| Error::Load(e.to_string()))?;
            p.load().map_err(|e| Error::Load(verifier_tail(&e)))?;
            Ok(p)
        });
    let prog = match (loaded, mode) {
        (Ok(p), _) => p,
        (Err(e), Mode::Auto) => {
            skipped.extend(
                wanted
                    .iter()
                    .map(|i| ((*i).clone(), format!("not attached: {e}"))),
            );
            return Ok((on, skipped));
        }
        (Err(e), _) => return Err(e),
    };
    for i in wanted {
        // Native (driver) mode first. Auto wants nothing else (generic XDP saves nothing
        // over TC); explicit XDP takes generic mode where the driver has none.
        let attached = match prog.attach(i, XdpFlags::DRV_MODE) {
            Ok(_) => Ok(true),
            Err(e) if mode == Mode::Auto => Err(format!("not attached: native XDP: {e}")),
            Err(_) => prog
                .attach(i, XdpFlags::SKB_MODE)
                .map(|_| false)
                .map_err(|e| format!("XDP: {e}")),
        };
        match attached {
            Ok(native) => {
                if !native {
                    skipped.push((
                        i.clone(),
                        "attached in generic mode: datagrams that would leave by it go to TC"
                            .into(),
                    ));
                }
                if mode == Mode::Xdp && !xdp::forwarding(i) {
                    skipped.push((
                        i.clone(),
                        "attached, but forwarding is off: XDP passes everything to TC here".into(),
                    ));
                }
                on.push((i.clone(), native));
            }
            Err(why) if mode == Mode::Auto => skipped.push((i.clone(), why)),
            Err(why) => return Err(Error::Attach(i.clone(), why)),
        }
    }
    Ok((on, skipped))
}

fn ncpus() -> usize {
    aya::util::nr_cpus().map_or(1, |n| n.max(1))
}

/// The verifier's reason: the last log line before its statistics.
fn verifier_tail(e: &aya::programs::ProgramError) -> String {
    let (io, s) = match e {
        aya::programs::ProgramError::LoadError {
            io_error,
            verifier_log,
        } => (io_error, verifier_log.to_string()),
        other => return other.to_string(),
    };
    let stats = |l: &str| {
        l.starts_with("verification time")
            || l.starts_with("processed ")
            || l.starts_with("stack depth")
    };
    let reason = s
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty() && !stats(l.trim()));
    format!("{io}: {}", reason.unwrap_or("(no verifier log)").trim())
}
