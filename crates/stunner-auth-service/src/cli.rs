//! Command line of the auth service binaries (`stunner-auth-service`, and `authd`, the
//! upstream name).

use std::process::ExitCode;

use clap::Parser;

use crate::{AppState, router};

/// STUNner auth service: TURN credentials and ICE configs for the Gateways the CDS knows.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// HTTP port.
    #[arg(short = 'p', long, default_value_t = 8088)]
    port: u16,
    /// Address to listen on.
    #[arg(long, default_value = "::")]
    address: std::net::IpAddr,
    /// The CDS server, `host:port` or a URL; when unset, found through the Kubernetes
    /// API (pods labelled `stunner.l7mp.io/config-discovery-service=enabled`) and
    /// port-forwarded, as upstream's authd does.
    #[arg(long = "cds-server-address", env = "CDS_SERVER_ADDR")]
    cds_server_address: Option<String>,
    /// CDS port where `--cds-server-address` names none (upstream's authd takes the host
    /// and the port apart).
    #[arg(long = "cds-server-port", default_value_t = stunner_cds::client::DEFAULT_PORT)]
    cds_server_port: u16,
    /// PEM CA bundle that verifies a TLS CDS server (`https://`, `wss://` addresses);
    /// default: the system's roots.
    #[arg(long = "cds-ca-file", env = "CDS_CA_FILE")]
    cds_ca_file: Option<std::path::PathBuf>,
    /// Namespace to look for the CDS in (default: all).
    #[arg(long = "cds-server-namespace", env = "CDS_SERVER_NAMESPACE")]
    cds_server_namespace: Option<String>,
    /// Require `Authorization: Bearer <token>` on `/` and `/ice` (upstream checks
    /// nothing: anybody who reaches the service gets credentials).
    #[arg(
        long = "require-token",
        env = "STUNNER_AUTH_TOKEN",
        hide_env_values = true
    )]
    require_token: Option<String>,
    /// Log level spec, e.g. `all:INFO`.
    #[arg(short = 'l', long = "log", default_value = "all:INFO")]
    log: String,
    /// Verbose: `all:DEBUG`.
    #[arg(short = 'v', long)]
    verbose: bool,
    /// Log format: `text` or `json` (the Helm chart passes it).
    #[arg(long = "log-format", default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
}

/// Parses the command line and runs the service.
pub fn main() -> ExitCode {
    let a = Args::parse();
    let level = if a.verbose {
        "debug"
    } else {
        a.log.rsplit(':').next().unwrap_or("info")
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(level.to_ascii_lowercase())
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr);
    let _ = if a.log_format == "json" {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("stunner-auth-service: cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async move {
        let state = AppState::new(
            a.require_token.clone().filter(|t| !t.is_empty()),
            std::env::var("STUNNER_PUBLIC_ADDR").ok().filter(|s| !s.is_empty()),
        );
        let cds = match a.cds_server_address.clone() {
            Some(c) => stunner_cds::client::with_port(&c, a.cds_server_port),
            None => {
                let found = stunner_k8s::discover(&stunner_k8s::Target::Cds, a.cds_server_namespace.as_deref()).await;
                match found {
                    Ok(local) => local.to_string(),
                    Err(e) => {
                        eprintln!("stunner-auth-service: {e}; or pass --cds-server-address");
                        return ExitCode::FAILURE;
                    }
                }
            }
        };
        let (tx, mut rx) = tokio::sync::mpsc::channel(16);
        // Ready once the CDS has answered: with no Gateway yet it has no config to send,
        // and a freshly installed control plane must still become ready (helm --wait).
        let (up_tx, mut up_rx) = tokio::sync::watch::channel(false);
        let trust = stunner_cds::client::Trust { ca_file: a.cds_ca_file.clone(), ca_pem: None };
        tokio::spawn(stunner_cds::client::watch_with(cds.clone(), None, None, tx, Some(up_tx), trust));
        let synced = state.clone();
        tokio::spawn(async move {
            while up_rx.changed().await.is_ok() {
                if *up_rx.borrow() {
                    synced.mark_synced();
                }
            }
        });
        let feed = state.clone();
        tokio::spawn(async move {
            while let Some(c) = rx.recv().await {
                tracing::info!(target: "auth", id = %c.admin.name, deleted = c.is_zero(), "config update");
                feed.apply(c);
            }
        });
        let addr = std::net::SocketAddr::new(a.address, a.port);
        let listener = match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("stunner-auth-service: cannot listen on {addr}: {e}");
                return ExitCode::FAILURE;
            }
        };
        tracing::info!(target: "auth", %addr, %cds, "serving");
        match axum::serve(listener, router(state)).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("stunner-auth-service: {e}");
                ExitCode::FAILURE
            }
        }
    })
}
