//! `kube-node-agent`: the node of the test control plane (see docs/TESTING.md). It
//! registers a Node, schedules pods onto it, runs their containers as local processes in
//! network namespaces of their own, proxies Services (ClusterIP and NodePort), answers
//! cluster DNS and serves the kubelet endpoints for logs and port-forward.

use std::ffi::OsString;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};

use kube_node_agent::agent::Agent;
use kube_node_agent::error::{Error, Result};
use kube_node_agent::{
    cluster, dns, image, kubelet_api, launch, netns, node, pod, proxy, scheduler,
};

#[derive(Parser)]
#[command(
    version,
    about = "A node agent that runs pods as local processes (test infrastructure)"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Register the node and run its pods until SIGTERM.
    Run(Box<RunArgs>),
    /// Internal: join a pod's namespaces and exec a container's program.
    Launch {
        /// Network namespace file (`/run/netns/NAME`).
        #[arg(long)]
        netns: Option<PathBuf>,
        /// `SOURCE=TARGET[:ro]` bind mounts in a private mount namespace.
        #[arg(long = "bind")]
        binds: Vec<String>,
        /// Working directory.
        #[arg(long)]
        workdir: Option<PathBuf>,
        /// The program and its arguments.
        #[arg(last = true, required = true)]
        argv: Vec<OsString>,
    },
}

#[derive(clap::Args)]
struct RunArgs {
    /// Node name.
    #[arg(long, default_value = "node-1")]
    node_name: String,
    /// State directory (pod volumes, logs).
    #[arg(long)]
    state_dir: PathBuf,
    /// The node's network namespace (made by scripts/k8s-env), with the pod bridge.
    #[arg(long)]
    hub_netns: String,
    /// The services namespace (made by scripts/k8s-env): ClusterIPs and cluster DNS.
    #[arg(long)]
    svc_netns: String,
    /// The outside client's network namespace: the API server is served there on its
    /// host address too (forwarded), so the host's kubeconfig works inside it.
    #[arg(long)]
    client_netns: Option<String>,
    /// Name of the pod bridge in the node's namespace.
    #[arg(long, default_value = "br0")]
    bridge: String,
    /// Prefix of the pods' namespace names.
    #[arg(long)]
    netns_prefix: String,
    /// Pod addresses (a /24; `.1` is the bridge and the node's InternalIP).
    #[arg(long, default_value = "10.244.0.0/24")]
    pod_cidr: String,
    /// The node's ExternalIP (where NodePorts are reached from outside).
    #[arg(long)]
    external_ip: String,
    /// Cluster DNS address (in the service range).
    #[arg(long, default_value = "10.96.0.10")]
    dns_ip: IpAddr,
    /// Cluster domain.
    #[arg(long, default_value = "cluster.local")]
    domain: String,
    /// ClusterIP of the `kubernetes` Service.
    #[arg(long, default_value = "10.96.0.1")]
    api_service_ip: String,
    /// Port of the kubelet API on 127.0.0.1.
    #[arg(long, default_value_t = 10250)]
    kubelet_port: u16,
    /// Directory of our binaries (stunnerd, the operator, ...), for our images.
    #[arg(long)]
    bin_dir: PathBuf,
    /// More image mappings, lines `IMAGE-PREFIX EXECUTABLE`.
    #[arg(long, env = "K8S_ENV_IMAGES")]
    images: Option<PathBuf>,
}

fn main() {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Launch {
            netns,
            binds,
            workdir,
            argv,
        } => {
            let binds: Result<Vec<_>> = binds.iter().map(|b| launch::Bind::parse(b)).collect();
            let err = match binds {
                Ok(binds) => launch::run(netns, &binds, workdir, &argv),
                Err(e) => e,
            };
            eprintln!("kube-node-agent launch: {err}");
            std::process::exit(127);
        }
        Cmd::Run(args) => {
            tracing_subscriber::fmt()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_default_env()
                        .unwrap_or_else(|_| "info,kube=warn,hyper=warn".into()),
                )
                .init();
            let rt = match tokio::runtime::Runtime::new() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("kube-node-agent: cannot start the runtime: {e}");
                    std::process::exit(1);
                }
            };
            if let Err(e) = rt.block_on(run(*args)) {
                eprintln!("kube-node-agent: {e}");
                std::process::exit(1);
            }
        }
    }
}

async fn run(a: RunArgs) -> Result<()> {
    let config = kube::Config::infer()
        .await
        .map_err(|e| Error::Config(format!("kubeconfig: {e}")))?;
    let host = config.cluster_url.host().unwrap_or("127.0.0.1").to_string();
    let port = config.cluster_url.port_u16().unwrap_or(443);
    let api_server: SocketAddr = (host.trim_matches(['[', ']']), port)
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| Error::Config(format!("cannot resolve the API server {host}:{port}")))?;
    let client = kube::Client::try_from(config)?;
    let images = image::Images::load(&a.bin_dir, a.images.as_deref())?;
    let net = netns::PodNetwork::new(&a.netns_prefix, &a.hub_netns, &a.bridge, &a.pod_cidr)?;
    net.clean_stale().await;
    let hub = netns::Hub::start(&a.hub_netns)?;
    let svc = netns::Hub::start(&a.svc_netns)?;
    std::fs::create_dir_all(a.state_dir.join("pods"))
        .map_err(|e| Error::io(format!("create {}", a.state_dir.display()), e))?;
    let self_exe = std::env::current_exe().map_err(|e| Error::io("find this executable", e))?;
    let agent = Arc::new(Agent {
        lookup: cluster::Lookup {
            client: client.clone(),
        },
        client: client.clone(),
        node: a.node_name.clone(),
        images,
        net,
        hub: hub.clone(),
        hub_netns: a.hub_netns.clone(),
        state: a.state_dir.clone(),
        dns_ip: a.dns_ip.to_string(),
        domain: a.domain.clone(),
        api_service: (a.api_service_ip.clone(), 443),
        external_ip: a.external_ip.clone(),
        self_exe,
        pods: Default::default(),
        created: Default::default(),
    });
    node::register(&agent, a.kubelet_port).await?;
    tracing::info!(node = %a.node_name, "registered");

    let shared = proxy::Shared::default();
    let kubelet = SocketAddr::from(([127, 0, 0, 1], a.kubelet_port));
    let mut tasks = vec![
        tokio::spawn(node::heartbeats(agent.clone(), a.kubelet_port)),
        tokio::spawn(scheduler::run(agent.clone())),
        tokio::spawn(node::pods(agent.clone())),
        tokio::spawn(proxy::watch(client.clone(), shared.clone())),
        tokio::spawn(proxy::run(
            hub.clone(),
            svc.clone(),
            shared.clone(),
            api_server,
        )),
    ];
    if let Some(ns) = &a.client_netns {
        let client_hub = netns::Hub::start(ns)?;
        tasks.push(tokio::spawn(proxy::forward_api(client_hub, api_server)));
    }
    {
        let (hub, shared, domain, dns) = (svc.clone(), shared.clone(), a.domain.clone(), a.dns_ip);
        tasks.push(tokio::spawn(async move {
            if let Err(e) = dns::serve(hub, shared, dns, domain).await {
                tracing::error!(error = %e, "cluster DNS");
            }
        }));
    }
    {
        let agent = agent.clone();
        tasks.push(tokio::spawn(async move {
            if let Err(e) = kubelet_api::serve(agent, kubelet).await {
                tracing::error!(error = %e, "kubelet API");
            }
        }));
    }

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| Error::io("SIGTERM handler", e))?;
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    tracing::info!("shutting down: stopping every pod");
    for t in &tasks {
        t.abort();
    }
    let uids: Vec<String> = agent
        .pods
        .lock()
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default();
    for uid in uids {
        pod::stop(&agent, &uid, 2);
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while agent.pods.lock().map(|p| !p.is_empty()).unwrap_or(false)
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    agent.net.clean_stale().await;
    agent.remove_mountpoints();
    Ok(())
}
