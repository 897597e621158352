//! stunnerctl: shows STUNner configs from the config discovery service, the status of a
//! dataplane, and ICE credentials from the auth service. Like upstream's, it finds these
//! servers through the Kubernetes API (kubeconfig or in-cluster) and port-forwards to
//! them; explicit addresses (`--cds-server-address`, `--pod-address`,
//! `--auth-server-address`) skip the API. Secrets are masked unless `--show-secrets`.

mod output;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use serde_json::Value;
use stunner_config::StunnerConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::output::{Format, config_summary, mask, render};

/// STUNner command line tool.
#[derive(Debug, Parser)]
#[command(name = "stunnerctl", version, about)]
struct Args {
    /// Output: summary, json, yaml or jsonpath=<template>.
    #[arg(short = 'o', long = "output", default_value = "summary", global = true)]
    output: String,
    /// Namespace of the gateway.
    #[arg(short = 'n', long, default_value = "default", global = true)]
    namespace: String,
    /// All namespaces.
    #[arg(short = 'a', long = "all-namespaces", global = true)]
    all_namespaces: bool,
    /// Print credentials, certificates and keys.
    #[arg(long = "show-secrets", global = true)]
    show_secrets: bool,
    /// The config discovery service `host:port`; when unset, found through the
    /// Kubernetes API and port-forwarded.
    #[arg(long = "cds-server-address", env = "CDS_SERVER_ADDR", global = true)]
    cds: Option<String>,
    /// The CDS port when `--cds-server-address` names none (upstream's flag).
    #[arg(long = "cds-server-port", global = true, default_value_t = stunner_cds::client::DEFAULT_PORT)]
    cds_port: u16,
    /// Namespace to look for the CDS in (default: all).
    #[arg(
        long = "cds-server-namespace",
        env = "CDS_SERVER_NAMESPACE",
        global = true
    )]
    cds_namespace: Option<String>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Show the dataplane configs (all of a namespace, or one gateway).
    Config {
        /// Gateway name.
        gateway: Option<String>,
        /// Keep printing updates.
        #[arg(short = 'w', long)]
        watch: bool,
    },
    /// Show the status of a stunnerd (its /status endpoint).
    Status {
        /// Gateway name: one of its stunnerd pods is found through the Kubernetes API.
        gateway: Option<String>,
        /// The pod's health-check address `host:port` instead (port 8086 of the pod).
        #[arg(long = "pod-address")]
        pod_address: Option<String>,
    },
    /// Ask the auth service for an ICE config (or TURN credentials).
    Auth {
        /// Gateway name.
        gateway: Option<String>,
        /// The auth service `host:port` (or the host alone, with `--auth-service-port`);
        /// when unset, found through the Kubernetes API.
        #[arg(long = "auth-server-address")]
        auth_server_address: Option<String>,
        /// The auth service port when `--auth-server-address` names none (upstream's flag).
        #[arg(long = "auth-service-port", default_value_t = 8088)]
        auth_port: u16,
        /// Namespace to look for the auth service in (upstream's flag; default: that of
        /// `--cds-server-namespace`, or all).
        #[arg(long = "auth-service-namespace")]
        auth_namespace: Option<String>,
        /// User id for ephemeral credentials.
        #[arg(short = 'u', long)]
        username: Option<String>,
        /// Ask `/` (TURN REST API form) instead of `/ice`.
        #[arg(long = "auth-turn-credential")]
        turn_credential: bool,
    },
    /// Show the license status of the CDS.
    License,
}

/// Errors, in one line.
#[derive(Debug, thiserror::Error)]
enum Error {
    #[error("{0}")]
    Usage(String),
    #[error("{addr}: {reason}")]
    Http { addr: String, reason: String },
    #[error("{0}")]
    Cds(#[from] stunner_cds::Error),
    #[error("{0}")]
    K8s(#[from] stunner_k8s::Error),
}

/// `explicit`, or a port-forward to `target` found through the Kubernetes API.
async fn address(
    explicit: Option<String>,
    target: stunner_k8s::Target,
    ns: Option<&str>,
) -> Result<String, Error> {
    if let Some(a) = explicit {
        return Ok(a);
    }
    Ok(stunner_k8s::discover(&target, ns).await?.to_string())
}

/// A plain HTTP/1.1 GET: status and body.
async fn http_get(addr: &str, path: &str) -> Result<(u16, String), Error> {
    let hp = stunner_cds::client::host_port(addr)?;
    let err = |reason: String| Error::Http {
        addr: hp.clone(),
        reason,
    };
    let mut s = tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(&hp))
        .await
        .map_err(|_| err("connect timed out".into()))?
        .map_err(|e| err(e.to_string()))?;
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {hp}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .map_err(|e| err(e.to_string()))?;
    let mut b = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut b))
        .await
        .map_err(|_| err("read timed out".into()))?
        .map_err(|e| err(e.to_string()))?;
    let text = String::from_utf8_lossy(&b).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Ok((code, body.to_string()))
}

async fn get_json(addr: &str, path: &str) -> Result<Value, Error> {
    let (code, body) = http_get(addr, path).await?;
    if code != 200 {
        return Err(Error::Http {
            addr: addr.to_string(),
            reason: format!("{code}: {}", body.trim()),
        });
    }
    serde_json::from_str(&body).map_err(|e| Error::Http {
        addr: addr.to_string(),
        reason: e.to_string(),
    })
}

fn print_config(c: &StunnerConfig, f: &Format, show: bool) -> Result<(), Error> {
    if c.is_zero() {
        println!("Gateway: {} <deleted>", c.admin.name);
        return Ok(());
    }
    if *f == Format::Summary {
        print!("{}", config_summary(c, show));
        return Ok(());
    }
    let mut v = serde_json::to_value(c).unwrap_or(Value::Null);
    if !show {
        mask(&mut v);
    }
    println!("{}", render(&v, f).map_err(Error::Usage)?);
    Ok(())
}

fn query(pairs: &[(&str, Option<&str>)]) -> String {
    pairs
        .iter()
        .filter_map(|(k, v)| v.map(|v| format!("{k}={v}")))
        .collect::<Vec<_>>()
        .join("&")
}

impl Args {
    /// `--cds-server-address` with `--cds-server-port` where it names no port.
    fn cds_address(&self) -> Result<Option<String>, Error> {
        Ok(match &self.cds {
            Some(c) => Some(stunner_cds::client::host_port_or(c, self.cds_port)?),
            None => None,
        })
    }
}

/// What every subcommand reads of the command line.
struct Common {
    format: Format,
    show: bool,
    explicit_cds: Option<String>,
    namespace: String,
    all_namespaces: bool,
    cds_namespace: Option<String>,
}

async fn run(a: Args) -> Result<(), Error> {
    let c = Common {
        format: Format::parse(&a.output).map_err(Error::Usage)?,
        show: a.show_secrets,
        explicit_cds: a.cds_address()?,
        namespace: a.namespace.clone(),
        all_namespaces: a.all_namespaces,
        cds_namespace: a.cds_namespace.clone(),
    };
    match a.cmd {
        Cmd::Config { gateway, watch } => config(&c, gateway, watch).await,
        Cmd::Status {
            gateway,
            pod_address,
        } => status(&c, gateway, pod_address).await,
        Cmd::Auth {
            gateway,
            auth_server_address,
            auth_port,
            auth_namespace,
            username,
            turn_credential,
        } => {
            let server = auth_server_address.map(|s| (s, auth_port));
            auth(
                &c,
                gateway,
                server,
                auth_namespace,
                username,
                turn_credential,
            )
            .await
        }
        Cmd::License => license(&c).await,
    }
}

/// `config`: one Gateway's config, those of a namespace, or all; `--watch` follows them.
async fn config(c: &Common, gateway: Option<String>, watch: bool) -> Result<(), Error> {
    let cds = address(
        c.explicit_cds.clone(),
        stunner_k8s::Target::Cds,
        c.cds_namespace.as_deref(),
    )
    .await?;
    let id = gateway.as_ref().map(|g| format!("{}/{g}", c.namespace));
    let ns = (!c.all_namespaces).then(|| c.namespace.clone());
    if watch {
        let (tx, mut rx) = tokio::sync::mpsc::channel(16);
        tokio::spawn(stunner_cds::client::watch(
            cds.clone(),
            id.clone(),
            None,
            tx,
        ));
        while let Some(cfg) = rx.recv().await {
            let in_ns = ns
                .as_deref()
                .is_none_or(|n| cfg.admin.name.starts_with(&format!("{n}/")));
            if id.is_some() || in_ns {
                print_config(&cfg, &c.format, c.show)?;
            }
        }
        return Ok(());
    }
    let configs: Vec<StunnerConfig> = match &id {
        Some(id) => vec![stunner_cds::client::load(&cds, id, None).await?],
        None => {
            let path = match &ns {
                Some(n) => format!("{}/{n}", stunner_cds::CONFIGS_PATH),
                None => stunner_cds::CONFIGS_PATH.to_string(),
            };
            let v = get_json(&cds, &path).await?;
            v["items"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .filter_map(|i| StunnerConfig::from_value(i).ok())
                .collect()
        }
    };
    for cfg in &configs {
        print_config(cfg, &c.format, c.show)?;
    }
    Ok(())
}

/// `status`: a dataplane pod's `/status`, found by Gateway or given.
async fn status(
    c: &Common,
    gateway: Option<String>,
    pod_address: Option<String>,
) -> Result<(), Error> {
    let pod_address = match (pod_address, gateway) {
        (Some(a), _) => a,
        (None, Some(g)) => {
            let t = stunner_k8s::Target::Dataplane {
                namespace: c.namespace.clone(),
                gateway: g,
            };
            address(None, t, None).await?
        }
        (None, None) => {
            return Err(Error::Usage(
                "status needs a gateway name or --pod-address".into(),
            ));
        }
    };
    let mut v = get_json(&pod_address, "/status").await?;
    mask(&mut v);
    if c.format == Format::Summary {
        let name = v
            .pointer("/admin/name")
            .and_then(Value::as_str)
            .unwrap_or("-");
        let allocs = v
            .get("allocationCount")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        let status = v.get("status").and_then(Value::as_str).unwrap_or("-");
        println!("{name}: allocs:{allocs}/status={status}");
        for l in v
            .get("listeners")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
        {
            println!(
                "  listener {}: {} port {}",
                l["name"].as_str().unwrap_or("-"),
                l["protocol"].as_str().unwrap_or("-"),
                l["port"]
            );
        }
    } else {
        println!("{}", render(&v, &c.format).map_err(Error::Usage)?);
    }
    Ok(())
}

/// `auth`: TURN credentials or an ICE config from the auth service.
async fn auth(
    c: &Common,
    gateway: Option<String>,
    server: Option<(String, u16)>,
    auth_namespace: Option<String>,
    username: Option<String>,
    turn_credential: bool,
) -> Result<(), Error> {
    let q = query(&[
        ("service", Some("turn")),
        (
            "namespace",
            (!c.all_namespaces).then_some(c.namespace.as_str()),
        ),
        ("gateway", gateway.as_deref()),
        ("username", username.as_deref()),
    ]);
    let path = if turn_credential {
        format!("/?{q}")
    } else {
        format!("/ice?{q}")
    };
    let explicit = server
        .map(|(s, port)| stunner_cds::client::host_port_or(&s, port))
        .transpose()?;
    let auth = address(
        explicit,
        stunner_k8s::Target::Auth,
        auth_namespace.as_deref().or(c.cds_namespace.as_deref()),
    )
    .await?;
    let mut v = get_json(&auth, &path).await?;
    if !c.show {
        mask(&mut v);
    }
    let f = if c.format == Format::Summary {
        Format::Json
    } else {
        c.format.clone()
    };
    println!("{}", render(&v, &f).map_err(Error::Usage)?);
    Ok(())
}

/// `license`: the CDS server's license status.
async fn license(c: &Common) -> Result<(), Error> {
    let cds = address(
        c.explicit_cds.clone(),
        stunner_k8s::Target::Cds,
        c.cds_namespace.as_deref(),
    )
    .await?;
    let v = get_json(&cds, "/api/v1/license").await?;
    if c.format == Format::Summary {
        println!(
            "License status:\n  Subscription type: {}\n  Enabled features: {}\n  Last updated: {}",
            v["subscriptionType"].as_str().unwrap_or("-"),
            v["enabledFeatures"],
            v["lastUpdated"].as_str().unwrap_or("-")
        );
    } else {
        println!("{}", render(&v, &c.format).map_err(Error::Usage)?);
    }
    Ok(())
}

fn main() -> ExitCode {
    let a = Args::parse();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("stunnerctl: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(a)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("stunnerctl: {e}");
            ExitCode::FAILURE
        }
    }
}
