//! The service proxy (what kube-proxy does, in user space): every Service port listens on
//! its ClusterIP in a services namespace (the service range is a local route there, and
//! the node's namespace routes it there), every NodePort on all the node's addresses; connections and UDP flows go to a ready endpoint
//! from the EndpointSlices (serving-but-terminating ones when none is ready, as kube-proxy
//! does). UDP flows keep their endpoint until idle, so a draining pod keeps its clients.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::netns::Hub;

/// Services and EndpointSlices of the cluster, as last seen.
#[derive(Default)]
pub struct Catalog {
    /// By `(namespace, name)`.
    pub services: HashMap<(String, String), Service>,
    /// By `(namespace, name)` of the slice.
    pub slices: HashMap<(String, String), EndpointSlice>,
}

/// The shared catalog and a wake-up for whoever follows it.
#[derive(Clone, Default)]
pub struct Shared {
    /// The catalog.
    pub catalog: Arc<RwLock<Catalog>>,
    /// Notified on every change.
    pub changed: Arc<Notify>,
}

fn key(m: &kube::api::ObjectMeta) -> (String, String) {
    (
        m.namespace.clone().unwrap_or_default(),
        m.name.clone().unwrap_or_default(),
    )
}

/// Keeps `shared` up to date with the cluster's Services and EndpointSlices.
pub async fn watch(client: kube::Client, shared: Shared) {
    let s = shared.clone();
    let svc = async move {
        let mut st = watcher::watcher(
            Api::<Service>::all(client.clone()),
            watcher::Config::default(),
        )
        .default_backoff()
        .boxed();
        let c2 = client;
        let sh = s.clone();
        let slices = tokio::spawn(async move {
            let mut st =
                watcher::watcher(Api::<EndpointSlice>::all(c2), watcher::Config::default())
                    .default_backoff()
                    .boxed();
            while let Some(ev) = st.next().await {
                let Ok(mut cat) = sh.catalog.write() else {
                    return;
                };
                match ev {
                    Ok(Event::Apply(o) | Event::InitApply(o)) => {
                        cat.slices.insert(key(&o.metadata), o);
                    }
                    Ok(Event::Delete(o)) => {
                        cat.slices.remove(&key(&o.metadata));
                    }
                    _ => {}
                }
                drop(cat);
                sh.changed.notify_waiters();
            }
        });
        while let Some(ev) = st.next().await {
            let Ok(mut cat) = s.catalog.write() else {
                break;
            };
            match ev {
                Ok(Event::Apply(o) | Event::InitApply(o)) => {
                    cat.services.insert(key(&o.metadata), o);
                }
                Ok(Event::Delete(o)) => {
                    cat.services.remove(&key(&o.metadata));
                }
                _ => {}
            }
            drop(cat);
            s.changed.notify_waiters();
        }
        slices.abort();
    };
    svc.await;
}

/// Where a listener sends its traffic.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Target {
    namespace: String,
    service: String,
    port_name: Option<String>,
    protocol: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Listen {
    addr: SocketAddr,
    udp: bool,
}

/// An endpoint, reached from the node's namespace, or (the API server) from the agent's own.
#[derive(Debug, Clone, Copy)]
enum Backend {
    Hub(SocketAddr),
    Host(SocketAddr),
}

impl Catalog {
    fn listeners(&self) -> HashMap<Listen, Target> {
        let mut out = HashMap::new();
        for ((ns, name), svc) in &self.services {
            let Some(spec) = &svc.spec else { continue };
            let cluster_ip = spec
                .cluster_ip
                .as_deref()
                .and_then(|ip| ip.parse::<IpAddr>().ok());
            let node_ports = matches!(spec.type_.as_deref(), Some("NodePort" | "LoadBalancer"));
            for p in spec.ports.iter().flatten() {
                let protocol = p.protocol.clone().unwrap_or_else(|| "TCP".into());
                if protocol != "TCP" && protocol != "UDP" {
                    continue;
                }
                let udp = protocol == "UDP";
                let target = Target {
                    namespace: ns.clone(),
                    service: name.clone(),
                    port_name: p.name.clone().filter(|n| !n.is_empty()),
                    protocol: protocol.clone(),
                };
                let Ok(port) = u16::try_from(p.port) else {
                    continue;
                };
                if let Some(ip) = cluster_ip {
                    out.insert(
                        Listen {
                            addr: SocketAddr::new(ip, port),
                            udp,
                        },
                        target.clone(),
                    );
                }
                if node_ports && let Some(np) = p.node_port.and_then(|n| u16::try_from(n).ok()) {
                    let any = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), np);
                    out.insert(Listen { addr: any, udp }, target);
                }
            }
        }
        out
    }

    fn backends(&self, t: &Target, api_server: SocketAddr) -> Vec<Backend> {
        if t.namespace == "default" && t.service == "kubernetes" {
            return vec![Backend::Host(api_server)];
        }
        let mut ready = Vec::new();
        let mut serving = Vec::new();
        for ((ns, _), s) in &self.slices {
            if ns != &t.namespace
                || s.metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get("kubernetes.io/service-name"))
                    != Some(&t.service)
            {
                continue;
            }
            let Some(port) = s.ports.iter().flatten().find(|p| {
                p.name.clone().filter(|n| !n.is_empty()) == t.port_name
                    && p.protocol.as_deref().unwrap_or("TCP") == t.protocol
            }) else {
                continue;
            };
            let Some(port) = port.port.and_then(|p| u16::try_from(p).ok()) else {
                continue;
            };
            for e in s.endpoints.iter().flatten() {
                let c = e.conditions.clone().unwrap_or_default();
                for a in &e.addresses {
                    let Ok(ip) = a.parse::<IpAddr>() else {
                        continue;
                    };
                    let b = Backend::Hub(SocketAddr::new(ip, port));
                    if c.ready.unwrap_or(true) {
                        ready.push(b);
                    } else if c.serving == Some(true) {
                        serving.push(b);
                    }
                }
            }
        }
        if ready.is_empty() { serving } else { ready }
    }
}

/// Runs the listeners that the catalog asks for, forever: NodePorts in the node's
/// namespace (`node`), ClusterIPs in the services namespace (`svc`), so that host-network
/// pods can bind any port the way they can beside the real kube-proxy, which holds no
/// sockets on ClusterIPs.
pub async fn run(node: Hub, svc: Hub, shared: Shared, api_server: SocketAddr) {
    let mut running: HashMap<Listen, (Target, JoinHandle<()>)> = HashMap::new();
    let rr = Arc::new(AtomicUsize::new(0));
    loop {
        let notified = shared.changed.notified();
        let want = shared
            .catalog
            .read()
            .map(|c| c.listeners())
            .unwrap_or_default();
        running.retain(|l, (t, h)| {
            let keep = want.get(l) == Some(t) && !h.is_finished();
            if !keep {
                h.abort();
            }
            keep
        });
        for (l, t) in want {
            if running.contains_key(&l) {
                continue;
            }
            let hub = if l.addr.ip().is_unspecified() {
                node.clone()
            } else {
                svc.clone()
            };
            let h = tokio::spawn(listener(
                hub,
                shared.clone(),
                l,
                t.clone(),
                api_server,
                rr.clone(),
            ));
            running.insert(l, (t, h));
        }
        tokio::select! {
            _ = notified => {}
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
    }
}

fn pick(shared: &Shared, t: &Target, api: SocketAddr, rr: &AtomicUsize) -> Option<Backend> {
    let list = shared.catalog.read().ok()?.backends(t, api);
    if list.is_empty() {
        return None;
    }
    Some(list[rr.fetch_add(1, Ordering::Relaxed) % list.len()])
}

async fn listener(
    hub: Hub,
    shared: Shared,
    l: Listen,
    t: Target,
    api: SocketAddr,
    rr: Arc<AtomicUsize>,
) {
    let res = if l.udp {
        udp(&hub, &shared, l.addr, &t, api, &rr).await
    } else {
        tcp(&hub, &shared, l.addr, &t, api, &rr).await
    };
    if let Err(e) = res {
        tracing::warn!(addr = %l.addr, service = %format!("{}/{}", t.namespace, t.service), error = %e, "service listener");
        // Retried by the reconcile loop.
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

async fn tcp(
    hub: &Hub,
    shared: &Shared,
    addr: SocketAddr,
    t: &Target,
    api: SocketAddr,
    rr: &AtomicUsize,
) -> std::io::Result<()> {
    let lis = hub.listen(addr).await?;
    loop {
        let (mut inbound, _) = lis.accept().await?;
        let Some(b) = pick(shared, t, api, rr) else {
            continue;
        };
        let hub = hub.clone();
        tokio::spawn(async move {
            let out = match b {
                Backend::Hub(a) => hub.connect(a).await,
                Backend::Host(a) => tokio::net::TcpStream::connect(a).await,
            };
            if let Ok(mut out) = out {
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
            }
        });
    }
}

/// UDP flows idle this long are forgotten (kube-proxy's conntrack UDP stream timeout is
/// 120 s; TURN refreshes within 10 minutes, so flows live longer here).
const UDP_IDLE: Duration = Duration::from_secs(600);

async fn udp(
    hub: &Hub,
    shared: &Shared,
    addr: SocketAddr,
    t: &Target,
    api: SocketAddr,
    rr: &AtomicUsize,
) -> std::io::Result<()> {
    let lis = Arc::new(hub.udp(addr).await?);
    let flows: Arc<tokio::sync::Mutex<HashMap<SocketAddr, Arc<tokio::net::UdpSocket>>>> =
        Arc::default();
    let mut buf = vec![0u8; 65536];
    loop {
        let (n, from) = lis.recv_from(&mut buf).await?;
        let existing = flows.lock().await.get(&from).cloned();
        let up = match existing {
            Some(s) => s,
            None => {
                let Some(Backend::Hub(b) | Backend::Host(b)) = pick(shared, t, api, rr) else {
                    continue;
                };
                let any = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0);
                // A flow that cannot be set up loses this datagram, not the listener.
                let Ok(s) = hub.udp(any).await else { continue };
                if s.connect(b).await.is_err() {
                    continue;
                }
                let s = Arc::new(s);
                flows.lock().await.insert(from, s.clone());
                let (s2, lis2, flows2) = (s.clone(), lis.clone(), flows.clone());
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 65536];
                    // An ICMP error (the endpoint went away) or idleness ends the flow.
                    while let Ok(Ok(n)) = tokio::time::timeout(UDP_IDLE, s2.recv(&mut buf)).await {
                        let _ = lis2.send_to(&buf[..n], from).await;
                    }
                    flows2.lock().await.remove(&from);
                });
                s
            }
        };
        let _ = up.send(&buf[..n]).await;
    }
}

/// Serves the API server's own address (`127.0.0.1:<port>`) inside the outside client's
/// namespace (`client`), forwarding to the real one: a client outside the cluster uses
/// the same kubeconfig as the host (`stunnerctl`, `turncat k8s://…`) and also reaches
/// the node's ExternalIP, as a laptop would.
pub async fn forward_api(client: Hub, api_server: SocketAddr) {
    let l = match client.listen(api_server).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, %api_server, "API server forward in the client namespace");
            return;
        }
    };
    while let Ok((mut conn, _)) = l.accept().await {
        tokio::spawn(async move {
            match tokio::net::TcpStream::connect(api_server).await {
                Ok(mut up) => {
                    let _ = tokio::io::copy_bidirectional(&mut conn, &mut up).await;
                }
                Err(e) => tracing::warn!(error = %e, "API server forward: connect"),
            }
        });
    }
}
