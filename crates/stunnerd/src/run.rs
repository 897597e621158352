//! The control loop: load or watch the config, apply it, serve the admin endpoints,
//! and shut down gracefully on SIGTERM/SIGINT.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::json;
use stunner_config::{StunnerConfig, defaults};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

use crate::admin::{AdminServer, AdminState, masked_json};
use crate::cli::Args;
use crate::daemon::Daemon;
use crate::logging::{self, LogHandle};
use crate::source::{self, Origin};
use crate::{Error, plan};
use stunner_cds::client::Trust;

/// A watched config file is re-read this often even without a change event.
const FILE_FALLBACK: Duration = Duration::from_secs(10);
/// How often STRICT_DNS names are re-resolved (upstream: 5 s).
const DNS_PERIOD: Duration = Duration::from_secs(5);

/// The config to start from, `None` for a watch that starts empty.
fn initial(args: &Args) -> Result<(Option<StunnerConfig>, Option<Origin>), Error> {
    if let Some(uri) = &args.uri {
        let parsed = stunner_config::TurnUri::parse(uri)?;
        let cert = if parsed.protocol.needs_certificate() {
            // As upstream: a one-line TLS/DTLS server gets a self-signed certificate.
            Some(crate::tls::self_signed(&parsed.host)?)
        } else {
            None
        };
        let c = StunnerConfig::from_turn_uri(uri, cert)?;
        return Ok((Some(c), None));
    }
    let origin = Origin::parse(
        args.config
            .as_deref()
            .unwrap_or(defaults::CONFIG_DISCOVERY_ADDRESS),
    );
    match &origin {
        // Loaded (one-shot) or watched once the runtime runs.
        Origin::Cds(_) | Origin::K8s => Ok((None, Some(origin))),
        Origin::File(p) if !args.watch || args.dry_run => {
            Ok((Some(source::load_file(p)?), Some(origin.clone())))
        }
        Origin::File(_) => Ok((None, Some(origin))),
    }
}

/// Loads a config once from a CDS server.
async fn load_cds(url: &str, id: &str, trust: &Trust) -> Result<StunnerConfig, Error> {
    let node = std::env::var(defaults::ENV_NODENAME).ok();
    stunner_cds::client::load_with(url, id, node.as_deref(), trust)
        .await
        .map_err(|e| Error::Origin(url.to_string(), e.to_string()))
}

/// Runs stunnerd on a thread of its own (a one-worker runtime) and returns at once: for
/// embedding it in tests and tools. The thread ends with stunnerd's exit code.
pub fn spawn(args: Args) -> std::thread::JoinHandle<ExitCode> {
    std::thread::spawn(move || {
        match tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
        {
            Ok(rt) => rt.block_on(run(args)),
            Err(e) => {
                eprintln!("stunnerd: cannot start the runtime: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

/// Runs stunnerd; the exit code of the process.
pub async fn run(args: Args) -> ExitCode {
    // GSO can be switched off to compare (benchmarks) or where it misbehaves.
    if std::env::var_os("STUNNERD_NO_GSO").is_some() {
        crate::batch::disable_gso();
    }
    let spec = args
        .log_override()
        .unwrap_or_else(|| defaults::LOG_LEVEL.to_string());
    let log = logging::init(&spec, args.log_format == "json");
    crate::dtls::allow_legacy(args.dtls_legacy);
    let id = args.instance_id();
    let (first, origin) = match starting_point(&args, &id).await {
        Ok(x) => x,
        Err(e) => {
            eprintln!("stunnerd: {e}");
            return ExitCode::FAILURE;
        }
    };
    if args.dry_run {
        if let Some(c) = &first {
            print!(
                "{}",
                plan::summary(c, args.udp_thread_num, &args.pod_addresses.0)
            );
        }
        return ExitCode::SUCCESS;
    }
    let state = Arc::new(AdminState {
        force_ready: args.force_ready_status,
        ..Default::default()
    });
    let mut ctl = Control {
        daemon: Daemon::new(args.udp_thread_num).with_pod_addresses(args.pod_addresses.0.clone()),
        dns: crate::dns::Dns::new(),
        state: state.clone(),
        admin: None,
        admin_endpoint: None,
        metrics: None,
        metrics_endpoint: None,
        log,
        log_override: args.log_override(),
    };
    match first {
        Some(c) => {
            if let Err(e) = ctl.apply(c).await {
                eprintln!("stunnerd: {e}");
                return ExitCode::FAILURE;
            }
        }
        None => {
            // Watch mode starts on the zero config: not ready until a real one arrives.
            let _ = ctl.apply(StunnerConfig::zero(&id)).await;
        }
    }
    let rx = watch(&args, origin, &id);
    let (Ok(sigterm), Ok(sigint)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        eprintln!("stunnerd: cannot install signal handlers");
        return ExitCode::FAILURE;
    };
    let mut signals = Signals { sigterm, sigint };
    ctl.serve(rx, &mut signals).await;
    ctl.shut_down(&mut signals).await;
    ExitCode::SUCCESS
}

/// The first config (a file, a URI, or one CDS load) and where to watch for more:
/// `-c k8s` resolved to a port-forwarded CDS address, and a CDS loaded once unless
/// watched.
async fn starting_point(
    args: &Args,
    id: &str,
) -> Result<(Option<StunnerConfig>, Option<Origin>), String> {
    let (mut first, mut origin) = initial(args).map_err(|e| e.to_string())?;
    if origin == Some(Origin::K8s) {
        // As upstream's `-c k8s`: find the CDS through the Kubernetes API; every
        // connection to the local address goes over a port-forward to its pod.
        let ns = std::env::var("CDS_SERVER_NAMESPACE")
            .ok()
            .filter(|n| !n.is_empty());
        let local = stunner_k8s::discover(&stunner_k8s::Target::Cds, ns.as_deref())
            .await
            .map_err(|e| format!("-c k8s: {e}"))?;
        origin = Some(Origin::Cds(format!("http://{local}")));
    }
    if let Some(Origin::Cds(url)) = &origin
        && (!args.watch || args.dry_run)
    {
        first = Some(
            load_cds(url, id, &args.cds_trust())
                .await
                .map_err(|e| e.to_string())?,
        );
    }
    Ok((first, origin))
}

/// Starts watching the origin (`-w`); `None` when nothing is watched.
fn watch(args: &Args, origin: Option<Origin>, id: &str) -> Option<mpsc::Receiver<StunnerConfig>> {
    if !args.watch || args.uri.is_some() {
        return None;
    }
    let (tx, rx) = mpsc::channel::<StunnerConfig>(4);
    match origin {
        Some(Origin::File(p)) => source::watch_file(p, FILE_FALLBACK, tx),
        Some(Origin::Cds(url)) => {
            let node = std::env::var(defaults::ENV_NODENAME)
                .ok()
                .filter(|n| !n.is_empty());
            tokio::spawn(stunner_cds::client::watch_with(
                url,
                Some(id.to_string()),
                node,
                tx,
                None,
                args.cds_trust(),
            ));
        }
        // Resolved to a CDS address before.
        Some(Origin::K8s) | None => return None,
    }
    Some(rx)
}

/// SIGTERM and SIGINT.
struct Signals {
    sigterm: tokio::signal::unix::Signal,
    sigint: tokio::signal::unix::Signal,
}

impl Signals {
    async fn next(&mut self) {
        tokio::select! {
            _ = self.sigterm.recv() => {}
            _ = self.sigint.recv() => {}
        }
    }
}

struct Control {
    daemon: Daemon,
    dns: crate::dns::Dns,
    state: Arc<AdminState>,
    admin: Option<AdminServer>,
    admin_endpoint: Option<String>,
    metrics: Option<AdminServer>,
    metrics_endpoint: Option<String>,
    log: LogHandle,
    log_override: Option<String>,
}

impl Control {
    /// Applies what the watch sends, publishes status every second and re-resolves
    /// STRICT_DNS names, until a signal.
    async fn serve(
        &mut self,
        mut rx: Option<mpsc::Receiver<StunnerConfig>>,
        signals: &mut Signals,
    ) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut dns = tokio::time::interval(DNS_PERIOD);
        loop {
            tokio::select! {
                c = async { rx.as_mut()?.recv().await }, if rx.is_some() => match c {
                    Some(c) if c.is_zero() => tracing::info!(target: "stunnerd", "ignoring deleted (zero) config"),
                    Some(c) => {
                        if let Err(e) = self.apply(c).await {
                            tracing::error!(target: "reconciler", "config rejected, running config unchanged: {e}");
                        }
                    }
                    None => rx = None,
                },
                _ = tick.tick() => self.publish_status(),
                _ = dns.tick() => self.resolve().await,
                () = signals.next() => return,
            }
        }
    }

    /// Graceful shutdown: refuse new allocations, wait for the live ones to end (or a
    /// second signal), then close everything.
    async fn shut_down(&mut self, signals: &mut Signals) {
        let n = self.daemon.allocations();
        tracing::info!(target: "stunnerd", "commencing graceful shutdown with {n} active allocation(s)");
        self.state.terminating.store(true, Ordering::Relaxed);
        self.daemon.drain();
        self.publish_status();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            if self.daemon.allocations() == 0 {
                tracing::info!(target: "stunnerd", "normal exit on graceful shutdown");
                break;
            }
            tokio::select! {
                _ = tick.tick() => self.publish_status(),
                () = signals.next() => {
                    tracing::warn!(target: "stunnerd", "second signal: exiting now");
                    break;
                }
            }
        }
        self.daemon.stop();
        for a in [self.admin.take(), self.metrics.take()]
            .into_iter()
            .flatten()
        {
            a.stop().await;
        }
    }

    async fn apply(&mut self, mut c: StunnerConfig) -> Result<(), Error> {
        if let Some(l) = &self.log_override {
            c.admin.log_level = l.clone();
        }
        // Names this config adds are looked up before it applies, names it keeps keep
        // their addresses: a push never refuses a STRICT_DNS peer it still routes.
        let new_names = self.daemon.unresolved(&c);
        for (name, addrs) in self.dns.resolve_all(new_names).await {
            self.daemon.set_resolved(&name, &addrs);
        }
        self.daemon.apply(c.clone())?;
        self.log.set(&c.admin.log_level);
        self.ensure_admin(&c).await;
        let ready = !c.is_zero() && self.daemon.listeners_up();
        if ready {
            self.state.ready.store(true, Ordering::Relaxed);
        }
        self.publish_status();
        Ok(())
    }

    /// Re-resolves the STRICT_DNS names and feeds the workers.
    async fn resolve(&mut self) {
        let names = self.daemon.dns_names();
        for (name, addrs) in self.dns.resolve_all(names).await {
            self.daemon.set_resolved(&name, &addrs);
        }
    }

    /// (Re)binds the health-check and metrics servers when their endpoints changed.
    /// Allocations are not affected.
    async fn ensure_admin(&mut self, c: &StunnerConfig) {
        let health = c.admin.healthcheck_endpoint.clone().unwrap_or_default();
        if self.admin_endpoint.as_deref() != Some(health.as_str()) {
            if let Some(a) = self.admin.take() {
                a.stop().await;
            }
            self.admin_endpoint = Some(health);
            if let Some(h) = c.admin.healthcheck() {
                self.admin = serve(&h, self.state.clone(), None, "health-check").await;
            }
        }
        if self.metrics_endpoint.as_deref() != Some(c.admin.metrics_endpoint.as_str()) {
            if let Some(a) = self.metrics.take() {
                a.stop().await;
            }
            self.metrics_endpoint = Some(c.admin.metrics_endpoint.clone());
            if let Some(m) = c.admin.metrics() {
                self.metrics = serve(&m, self.state.clone(), Some(&m.path), "metrics").await;
            }
        }
    }

    fn publish_status(&self) {
        let Some(c) = self.daemon.config() else {
            return;
        };
        let mut doc = masked_json(c);
        let status = if self.state.terminating.load(Ordering::Relaxed) {
            "TERMINATING"
        } else if self.state.ready.load(Ordering::Relaxed) {
            "READY"
        } else {
            "NOT-READY"
        };
        crate::offload::global().refresh();
        doc["allocationCount"] = json!(self.daemon.allocations());
        doc["offload"] = crate::offload::global().status();
        doc["status"] = json!(status);
        doc["listener_stats"] = self
            .daemon
            .listener_stats()
            .into_iter()
            .map(|l| {
                let t = l.traffic;
                let mut v = json!({"name": l.name, "workers": l.workers, "allocations": l.allocations,
                       "rx": {"pkts": t.rx_packets, "bytes": t.rx_bytes},
                       "tx": {"pkts": t.tx_packets, "bytes": t.tx_bytes}});
                if let Some(r) = l.tcp_relay {
                    v["tcp_relay"] = json!({"connections": r.connections,
                        "connections_total": r.connections_total,
                        "rx_bytes": r.bytes_from_peers, "tx_bytes": r.bytes_to_peers});
                }
                v
            })
            .collect();
        if let Ok(mut s) = self.state.status.lock() {
            *s = doc;
        }
        if let Ok(mut m) = self.state.metrics.lock() {
            *m = self.daemon.metrics();
        }
    }
}

/// Binds an admin HTTP server at `e`.
async fn serve(
    e: &stunner_config::HttpEndpoint,
    state: Arc<AdminState>,
    metrics_path: Option<&str>,
    what: &str,
) -> Option<AdminServer> {
    let ip: IpAddr = if e.host.is_empty() {
        IpAddr::V6(Ipv6Addr::UNSPECIFIED)
    } else {
        match e.host.trim_matches(['[', ']']).parse() {
            Ok(ip) => ip,
            Err(_) => {
                tracing::error!(target: "admin", host = %e.host, "{what} host must be an IP address");
                return None;
            }
        }
    };
    match AdminServer::start(SocketAddr::new(ip, e.port), state, metrics_path).await {
        Ok(a) => {
            tracing::info!(target: "admin", addr = %a.addr, "{what} server started");
            Some(a)
        }
        Err(err) => {
            tracing::error!(target: "admin", port = e.port, error = %err, "cannot start {what} server");
            None
        }
    }
}
