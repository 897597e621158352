//! Command line: `render`, `standalone` and `crds`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use stunner_gateway::{DataplaneMode, RenderOptions};

/// STUNner gateway operator. Without a subcommand it runs against the Kubernetes API
/// (kubeconfig or in-cluster config).
#[derive(Debug, Parser)]
#[command(version, about, args_conflicts_with_subcommands = true)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunFlags,
}

/// Flags of the Kubernetes mode (upstream's, with the same environment overrides).
#[derive(Debug, clap::Args)]
struct RunFlags {
    #[command(flatten)]
    common: RenderFlags,
    /// CDS listen address.
    #[arg(long, default_value = ":13478")]
    config_discovery_address: String,
    #[command(flatten)]
    cds_tls: CdsTls,
    /// With `--cds-tls-cert`: the PEM CA bundle dataplanes verify the CDS with (rendered
    /// into their `STUNNER_CDS_CA`); default the serving certificate itself (a
    /// self-signed one). A cert-manager Secret's `ca.crt`.
    #[arg(
        long,
        env = "STUNNER_GATEWAY_OPERATOR_CDS_CA_FILE",
        requires = "cds_tls_cert"
    )]
    cds_ca_file: Option<PathBuf>,
    /// The CDS address handed to stunnerd pods; default the CDS Service
    /// `stunner-config-discovery.<namespace>.svc:13478`, so a leader change does not
    /// roll every dataplane (upstream hands out the operator's pod IP).
    #[arg(long, env = "STUNNER_GATEWAY_OPERATOR_CDS_SERVICE_ADDRESS")]
    cds_service_address: Option<String>,
    /// Namespace the operator runs in (Lease, default CDS Service).
    #[arg(long, env = "POD_NAMESPACE", default_value = "stunner-system")]
    namespace: String,
    /// Minimum interval between renders.
    #[arg(long, default_value = "250ms", value_parser = parse_duration)]
    throttle_timeout: Duration,
    /// Watch v1 Endpoints instead of EndpointSlices (upstream's spelling, sic). Without
    /// it, Endpoints are still used when the API does not serve or allow EndpointSlices.
    #[arg(long = "disable-endpontslice-controller", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    disable_endpointslice_controller: bool,
    /// On exit, mark our classes and Gateways unavailable and delete the dataplanes.
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    enable_finalizer: bool,
    /// `/metrics` listen address (`0` disables).
    #[arg(long, default_value = ":8080")]
    metrics_bind_address: String,
    /// `/healthz` and `/readyz` listen address.
    #[arg(long, default_value = ":8081")]
    health_probe_bind_address: String,
    /// Accepted for compatibility (no profiler here).
    #[arg(
        long,
        env = "STUNNER_GATEWAY_OPERATOR_PPROF_BIND_ADDRESS",
        default_value = "0"
    )]
    pprof_bind_address: String,
    /// Leader election: only the Lease holder writes (every replica serves CDS).
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    leader_elect: bool,
    /// Log encoder: `console` or `json` (upstream's zap flag).
    #[arg(long, default_value = "console")]
    zap_encoder: String,
    /// Log level: `debug`, `info`, `error` (upstream's zap flag).
    #[arg(long, default_value = "info")]
    zap_log_level: String,
    /// Accepted for compatibility.
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    zap_devel: bool,
}

/// Renderer settings shared by every mode (the operator's flags).
#[derive(Debug, clap::Args)]
struct RenderFlags {
    /// `managed` (a stunnerd Deployment and CDS config per Gateway) or `legacy` (one
    /// ConfigMap per GatewayClass). Unknown values are an error.
    #[arg(
        long,
        env = "STUNNER_GATEWAY_OPERATOR_DATAPLANE_MODE",
        default_value = "managed"
    )]
    dataplane_mode: String,
    /// GatewayClass `controllerName` to manage.
    #[arg(
        long,
        env = "STUNNER_GATEWAY_OPERATOR_CONTROLLER_NAME",
        default_value = stunner_gateway::names::DEFAULT_CONTROLLER_NAME
    )]
    controller_name: String,
    /// Endpoint discovery: STATIC clusters from EndpointSlices; `false` gives STRICT_DNS.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    endpoint_discovery: bool,
    /// Gateway labels not copied to Deployments (comma-separated; empty disables).
    #[arg(
        long,
        env = "STUNNER_GATEWAY_OPERATOR_LABEL_FILTER",
        value_delimiter = ','
    )]
    label_filter: Option<Vec<String>>,
}

/// TLS for the CDS server (ours; upstream serves CDS in plaintext only).
#[derive(Debug, clap::Args)]
struct CdsTls {
    /// PEM certificate chain: serve CDS over TLS (`https://`, `wss://`). With
    /// `--cds-tls-key`; a Kubernetes TLS Secret's `tls.crt`.
    #[arg(
        long,
        env = "STUNNER_GATEWAY_OPERATOR_CDS_TLS_CERT",
        requires = "cds_tls_key"
    )]
    cds_tls_cert: Option<PathBuf>,
    /// PEM private key of `--cds-tls-cert` (a TLS Secret's `tls.key`).
    #[arg(
        long,
        env = "STUNNER_GATEWAY_OPERATOR_CDS_TLS_KEY",
        requires = "cds_tls_cert"
    )]
    cds_tls_key: Option<PathBuf>,
}

impl CdsTls {
    fn config(&self) -> Result<Option<Arc<stunner_cds::tls::ServerConfig>>, stunner_cds::Error> {
        match (&self.cds_tls_cert, &self.cds_tls_key) {
            (Some(c), Some(k)) => stunner_cds::tls::server_config(c, k).map(Some),
            _ => Ok(None),
        }
    }
}

/// Manifest inputs of `render` and `standalone`.
#[derive(Debug, clap::Args)]
struct Files {
    /// Manifest files or directories (`*.yaml`, `*.yml`, `*.json`); `-` is stdin.
    #[arg(short = 'f', long = "filename", required = true)]
    files: Vec<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Render manifests offline and print the stunnerd configs, the generated objects
    /// and the statuses as YAML.
    Render {
        #[command(flatten)]
        flags: RenderFlags,
        #[command(flatten)]
        files: Files,
        /// The CDS address given to stunnerd pods (`STUNNER_CONFIG_ORIGIN`).
        #[arg(
            long,
            default_value = "stunner-config-discovery.stunner-system.svc:13478"
        )]
        cds_service_address: String,
    },
    /// No cluster: watch manifest files, re-render on change, serve the configs over CDS.
    Standalone {
        #[command(flatten)]
        flags: RenderFlags,
        #[command(flatten)]
        files: Files,
        /// CDS listen address.
        #[arg(long, default_value = ":13478")]
        config_discovery_address: String,
        #[command(flatten)]
        tls: CdsTls,
        /// How often the manifest files are checked for changes.
        #[arg(long, default_value = "1s", value_parser = parse_duration)]
        poll_interval: Duration,
    },
    /// Print the STUNner CRD manifests.
    Crds {
        /// Print the Gateway API CRDs the operator needs instead (generated from the
        /// `gateway-api` crate's types).
        #[arg(long)]
        gateway_api: bool,
    },
}

/// Parses a duration as `humantime` does (`250ms`, `1s`, `1m30s`, `2 min`); a bare number
/// is seconds, as this flag took before. Go's `time.ParseDuration` (upstream's flags) also
/// takes fractions such as `1.5s`; write `1s 500ms` instead (docs/MIGRATING.md).
fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = match s.trim().parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => humantime::parse_duration(s.trim())
            .map_err(|e| format!("invalid duration {s:?}: {e} (e.g. 250ms, 1s, 1m30s)"))?,
    };
    const RANGE: std::ops::RangeInclusive<Duration> =
        Duration::from_millis(10)..=Duration::from_secs(3600);
    if !RANGE.contains(&d) {
        return Err(format!("duration {s:?} out of range (10ms..1h)"));
    }
    Ok(d)
}

impl RenderFlags {
    fn options(&self, cds: &str) -> Result<RenderOptions, stunner_gateway::Error> {
        let mut o = RenderOptions {
            mode: self.dataplane_mode.parse::<DataplaneMode>()?,
            controller_name: self.controller_name.clone(),
            endpoint_discovery: self.endpoint_discovery,
            cds_address: cds.to_string(),
            ..RenderOptions::default()
        };
        if let Some(f) = &self.label_filter {
            o.label_filter = f.iter().filter(|s| !s.is_empty()).cloned().collect();
        }
        Ok(o)
    }
}

/// `:13478` → `0.0.0.0:13478`; `host:port` as given.
fn listen_addr(a: &str) -> String {
    if a.starts_with(':') {
        format!("0.0.0.0{a}")
    } else {
        a.to_string()
    }
}

/// Prints to stdout; a closed pipe (`| head`) is not an error.
fn emit(text: &str) -> ExitCode {
    use std::io::Write;
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => fail(crate::Error::Output(e)),
    }
}

fn fail(e: impl std::fmt::Display) -> ExitCode {
    eprintln!("stunner-gateway-operator: {e}");
    ExitCode::FAILURE
}

/// Parses the command line and runs the command.
pub fn main() -> ExitCode {
    let args = Args::parse();
    let level = std::env::var("RUST_LOG").unwrap_or_else(|_| args.run.zap_log_level.clone());
    let filter = tracing_subscriber::EnvFilter::try_new(&level).unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if args.run.zap_encoder == "json" {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
    let Some(command) = args.command else {
        return run_kubernetes(args.run);
    };
    match command {
        Command::Crds { gateway_api } => match if gateway_api {
            stunner_gateway::crd::gateway_api_crds_yaml()
        } else {
            stunner_gateway::crd::crds_yaml()
        } {
            Ok(y) => emit(&y),
            Err(e) => fail(e),
        },
        Command::Render {
            flags,
            files,
            cds_service_address,
        } => {
            let mut opts = match flags.options(&cds_service_address) {
                Ok(o) => o,
                Err(e) => return fail(e),
            };
            opts.now = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::now(),
            );
            match crate::standalone::render_files(&files.files, &opts)
                .and_then(|d| Ok(d.to_yaml()?))
            {
                Ok(y) => emit(&y),
                Err(e) => fail(e),
            }
        }
        Command::Standalone {
            flags,
            files,
            config_discovery_address,
            tls,
            poll_interval,
        } => {
            let addr = listen_addr(&config_discovery_address);
            let tls = match tls.config() {
                Ok(t) => t,
                Err(e) => return fail(e),
            };
            let opts = match flags.options(&addr) {
                Ok(o) => o,
                Err(e) => return fail(e),
            };
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => return fail(format!("cannot start runtime: {e}")),
            };
            rt.block_on(async move {
                let listener = match tokio::net::TcpListener::bind(&addr).await {
                    Ok(l) => l,
                    Err(e) => return fail(format!("cannot listen on {addr}: {e}")),
                };
                tracing::info!(target: "operator", %addr, tls = tls.is_some(), "standalone: serving CDS");
                match crate::standalone::run(files.files, opts, listener, tls, poll_interval).await {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => fail(e),
                }
            })
        }
    }
}

fn run_kubernetes(f: RunFlags) -> ExitCode {
    let cds_service = f.cds_service_address.clone().unwrap_or_else(|| {
        format!(
            "stunner-config-discovery.{}.svc:{}",
            f.namespace,
            stunner_gateway::names::CDS_PORT
        )
    });
    let mut render = match f.common.options(&cds_service) {
        Ok(o) => o,
        Err(e) => return fail(e),
    };
    if let Some(cert) = &f.cds_tls.cds_tls_cert {
        let ca = f.cds_ca_file.as_ref().unwrap_or(cert);
        match std::fs::read_to_string(ca) {
            Ok(pem) if pem.contains("-----BEGIN CERTIFICATE-----") => render.cds_ca = Some(pem),
            Ok(_) => return fail(format!("{}: no PEM certificate in it", ca.display())),
            Err(e) => return fail(format!("{}: {e}", ca.display())),
        }
    }
    let identity = std::env::var("POD_NAME")
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| format!("stunner-gateway-operator-{}", std::process::id()));
    let cds_tls = match f.cds_tls.config() {
        Ok(t) => t,
        Err(e) => return fail(e),
    };
    let cfg = crate::k8s::RunConfig {
        render,
        cds_listen: f.config_discovery_address,
        cds_tls,
        health_listen: f.health_probe_bind_address,
        metrics_listen: f.metrics_bind_address,
        throttle: f.throttle_timeout,
        leader_elect: f.leader_elect,
        lease_namespace: f.namespace,
        identity,
        finalizer: f.enable_finalizer,
        endpoint_source: if f.disable_endpointslice_controller {
            crate::k8s::watch::EndpointSource::Endpoints
        } else {
            crate::k8s::watch::EndpointSource::EndpointSlices
        },
    };
    // One thread runs the whole operator: its work is waiting on the API server and the
    // CDS clients, and the render is single-threaded anyway. Every extra thread that
    // allocates gets its own glibc arena, which at full scale (docs/SCALING.md) cost
    // ~13 MB of RSS; p99 staleness stayed within 0.4–0.5 s.
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(format!("cannot start runtime: {e}")),
    };
    rt.block_on(async move {
        let client = match kube::Client::try_default().await {
            Ok(c) => c,
            Err(e) => return fail(format!("no Kubernetes API: {e}")),
        };
        match crate::k8s::run(client, cfg).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(e),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn durations_are_read_as_humantime_writes_them() {
        let ok = [
            ("250ms", Duration::from_millis(250)),
            ("1s", Duration::from_secs(1)),
            ("1m30s", Duration::from_secs(90)),
            ("2 min", Duration::from_secs(120)),
            ("5", Duration::from_secs(5)),
        ];
        for (s, d) in ok {
            assert_eq!(parse_duration(s), Ok(d), "{s}");
        }
    }

    #[test]
    fn a_bad_or_out_of_range_duration_names_the_input() {
        for s in ["", "fast", "1.5x", "5ms", "2h", "0"] {
            let e = parse_duration(s).expect_err(s);
            assert!(e.contains(&format!("{s:?}")), "{s}: {e}");
        }
    }
}
