//! Pod networking: one network namespace per pod, joined by a veth pair to a bridge in
//! the node's ("hub") namespace, and a thread living in the hub namespace that creates the
//! sockets the agent needs there (service proxies, DNS, probes, port-forwards). Sockets keep
//! the namespace they were created in, so the rest of the agent uses them from anywhere.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use nix::sched::{CloneFlags, setns};
use tokio::sync::oneshot;

use crate::error::{Error, Result};

type Job = Box<dyn FnOnce() + Send>;

/// Runs closures on a thread inside one network namespace (the node's, or the services').
#[derive(Clone)]
pub struct Hub {
    jobs: std::sync::mpsc::Sender<Job>,
}

impl Hub {
    /// Starts the hub thread in `/run/netns/<name>`.
    pub fn start(name: &str) -> Result<Self> {
        let path = netns_path(name);
        let file = std::fs::File::open(&path)
            .map_err(|e| Error::io(format!("open {}", path.display()), e))?;
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("hub-netns".into())
            .spawn(move || {
                let joined = setns(file, CloneFlags::CLONE_NEWNET);
                let ok = joined.is_ok();
                let _ = ready_tx.send(joined);
                if ok {
                    while let Ok(job) = rx.recv() {
                        job();
                    }
                }
            })
            .map_err(|e| Error::io("spawn the hub thread", e))?;
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(Self { jobs: tx }),
            Ok(Err(e)) => Err(Error::io(format!("setns {}", path.display()), e.into())),
            Err(_) => Err(Error::Config("the hub thread died".into())),
        }
    }

    /// Runs `f` in the hub namespace and returns its result.
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        self.jobs
            .send(Box::new(move || {
                let _ = tx.send(f());
            }))
            .map_err(|_| Error::Config("the hub thread is gone".into()))?;
        rx.await
            .map_err(|_| Error::Config("the hub thread dropped a job".into()))
    }

    /// A TCP connection to `addr` from the hub namespace.
    pub async fn connect(
        &self,
        addr: std::net::SocketAddr,
    ) -> std::io::Result<tokio::net::TcpStream> {
        let sock = self
            .run(move || -> std::io::Result<std::net::TcpStream> {
                let s = socket2::Socket::new(
                    socket2::Domain::for_address(addr),
                    socket2::Type::STREAM,
                    Some(socket2::Protocol::TCP),
                )?;
                s.set_nonblocking(true)?;
                Ok(s.into())
            })
            .await
            .map_err(std::io::Error::other)??;
        let sock = tokio::net::TcpSocket::from_std_stream(sock);
        tokio::time::timeout(std::time::Duration::from_secs(5), sock.connect(addr))
            .await
            .map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::TimedOut, format!("connect {addr}"))
            })?
    }

    /// A nonblocking UDP socket bound to `addr` in the hub namespace.
    pub async fn udp(&self, addr: std::net::SocketAddr) -> std::io::Result<tokio::net::UdpSocket> {
        let s = self
            .run(move || -> std::io::Result<std::net::UdpSocket> {
                let s = std::net::UdpSocket::bind(addr)?;
                s.set_nonblocking(true)?;
                Ok(s)
            })
            .await
            .map_err(std::io::Error::other)??;
        tokio::net::UdpSocket::from_std(s)
    }

    /// A TCP listener bound to `addr` in the hub namespace.
    pub async fn listen(
        &self,
        addr: std::net::SocketAddr,
    ) -> std::io::Result<tokio::net::TcpListener> {
        let l = self
            .run(move || -> std::io::Result<std::net::TcpListener> {
                let s = socket2::Socket::new(
                    socket2::Domain::for_address(addr),
                    socket2::Type::STREAM,
                    Some(socket2::Protocol::TCP),
                )?;
                s.set_reuse_address(true)?;
                s.bind(&addr.into())?;
                s.listen(128)?;
                s.set_nonblocking(true)?;
                Ok(s.into())
            })
            .await
            .map_err(std::io::Error::other)??;
        tokio::net::TcpListener::from_std(l)
    }
}

/// `/run/netns/<name>`.
pub fn netns_path(name: &str) -> PathBuf {
    PathBuf::from("/run/netns").join(name)
}

/// Runs `ip ARGS`, failing with its stderr.
pub async fn ip(args: &[&str]) -> Result<()> {
    let out = tokio::process::Command::new("ip")
        .args(args)
        .output()
        .await
        .map_err(|e| Error::io("run ip", e))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::Command {
            cmd: format!("ip {}", args.join(" ")),
            detail: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

/// The pod address range of this node: a /24 on the hub bridge, `.1` being the bridge.
#[derive(Clone)]
pub struct PodNetwork {
    prefix: String,
    hub: String,
    bridge: String,
    base: [u8; 3],
    used: Arc<Mutex<Leases>>,
}

/// The pod addresses in use, and the last one handed out.
#[derive(Debug, Default)]
struct Leases {
    used: BTreeSet<u8>,
    last: u8,
}

impl Leases {
    /// The first free host number after the last one handed out, wrapping (host-local
    /// IPAM's order): a freed address is reused as late as possible, so the neighbour
    /// caches that still map it to a deleted pod's MAC have long expired.
    fn take(&mut self) -> Option<u8> {
        let range = 2..=254u8;
        let start = self.last.max(1);
        let i = (start + 1..=*range.end())
            .chain(range.clone())
            .find(|i| !self.used.contains(i))?;
        self.used.insert(i);
        self.last = i;
        Some(i)
    }
}

/// A pod's own namespace and address.
#[derive(Debug, Clone)]
pub struct PodNet {
    /// Namespace name (under `/run/netns`).
    pub netns: String,
    /// The pod IP.
    pub ip: Ipv4Addr,
    index: u8,
}

impl PodNetwork {
    /// `cidr` is `A.B.C.0/24`; namespaces are named `<prefix>-p<N>`.
    pub fn new(prefix: &str, hub: &str, bridge: &str, cidr: &str) -> Result<Self> {
        let net = cidr
            .strip_suffix("/24")
            .and_then(|a| a.parse::<Ipv4Addr>().ok())
            .ok_or_else(|| Error::Config(format!("--pod-cidr {cidr:?}: expected A.B.C.0/24")))?;
        let [a, b, c, _] = net.octets();
        Ok(Self {
            prefix: prefix.into(),
            hub: hub.into(),
            bridge: bridge.into(),
            base: [a, b, c],
            used: Arc::default(),
        })
    }

    /// The bridge address: the pods' default gateway and the node's InternalIP.
    pub fn gateway(&self) -> Ipv4Addr {
        let [a, b, c] = self.base;
        Ipv4Addr::new(a, b, c, 1)
    }

    /// Removes namespaces left by an earlier run of this agent.
    pub async fn clean_stale(&self) {
        let Ok(dir) = std::fs::read_dir("/run/netns") else {
            return;
        };
        let mine = format!("{}-p", self.prefix);
        for e in dir.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if name.starts_with(&mine) {
                let _ = ip(&["netns", "del", &name]).await;
            }
        }
    }

    /// Creates a pod namespace with a fresh address.
    pub async fn create(&self) -> Result<PodNet> {
        let index = self
            .used
            .lock()
            .map_err(|_| Error::Config("poisoned".into()))?
            .take()
            .ok_or_else(|| Error::Config("pod address range exhausted".into()))?;
        let [a, b, c] = self.base;
        let net = PodNet {
            netns: format!("{}-p{index}", self.prefix),
            ip: Ipv4Addr::new(a, b, c, index),
            index,
        };
        if let Err(e) = self.setup(&net).await {
            self.delete(&net).await;
            return Err(e);
        }
        Ok(net)
    }

    async fn setup(&self, net: &PodNet) -> Result<()> {
        let ns = net.netns.as_str();
        let host_if = format!("vp{}", net.index);
        let addr = format!("{}/24", net.ip);
        let gw = self.gateway().to_string();
        let _ = ip(&["netns", "del", ns]).await;
        let _ = ip(&["-n", &self.hub, "link", "del", &host_if]).await;
        ip(&["netns", "add", ns]).await?;
        ip(&[
            "-n", &self.hub, "link", "add", &host_if, "type", "veth", "peer", "name", "eth0",
            "netns", ns,
        ])
        .await?;
        ip(&[
            "-n",
            &self.hub,
            "link",
            "set",
            &host_if,
            "master",
            &self.bridge,
            "up",
        ])
        .await?;
        ip(&["-n", ns, "link", "set", "lo", "up"]).await?;
        ip(&["-n", ns, "addr", "add", &addr, "dev", "eth0"]).await?;
        // An address can have belonged to a deleted pod, and the node's namespace (where
        // hostNetwork pods and the service proxy run) and other pods may still map it to
        // that pod's MAC: a datagram sent on such an entry is lost until the kernel's
        // probes fail, seconds later. So, as the CNI bridge plugin does, the node's entry
        // goes, and the pod announces itself with a gratuitous ARP as its link comes up.
        let _ = ip(&[
            "-n",
            &self.hub,
            "neigh",
            "del",
            &net.ip.to_string(),
            "dev",
            &self.bridge,
        ])
        .await;
        ip(&[
            "netns",
            "exec",
            ns,
            "sysctl",
            "-qw",
            "net.ipv4.conf.eth0.arp_notify=1",
        ])
        .await?;
        ip(&["-n", ns, "link", "set", "eth0", "up"]).await?;
        ip(&["-n", ns, "route", "add", "default", "via", &gw]).await?;
        Ok(())
    }

    /// Deletes a pod namespace (which takes its veth pair with it) and frees its address.
    pub async fn delete(&self, net: &PodNet) {
        let _ = ip(&["netns", "del", &net.netns]).await;
        let _ = ip(&[
            "-n",
            &self.hub,
            "neigh",
            "del",
            &net.ip.to_string(),
            "dev",
            &self.bridge,
        ])
        .await;
        if let Ok(mut l) = self.used.lock() {
            l.used.remove(&net.index);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Leases;

    #[test]
    fn addresses_go_round_before_one_is_reused() {
        let mut l = Leases::default();
        assert_eq!((l.take(), l.take(), l.take()), (Some(2), Some(3), Some(4)));
        l.used.remove(&2);
        // 2 is free again, but 5 comes first.
        assert_eq!(l.take(), Some(5));
        l.used.extend(6..=254);
        assert_eq!(l.take(), Some(2), "wraps to the only free one");
        assert_eq!(l.take(), None, "exhausted");
    }
}
