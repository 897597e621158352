//! Command line: `render`, `standalone` and `crds`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use stunner_gateway::{DataplaneMode, RenderOptions};

/// STUNner gateway operator.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

/// Renderer settings shared by the subcommands (the operator's flags).
#[derive(Debug, clap::Args)]
struct RenderFlags {
    /// Manifest files or directories (`*.yaml`, `*.yml`, `*.json`); `-` is stdin.
    #[arg(short = 'f', long = "filename", required = true)]
    files: Vec<PathBuf>,
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
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    endpoint_discovery: bool,
    /// Gateway labels not copied to Deployments (comma-separated; empty disables).
    #[arg(
        long,
        env = "STUNNER_GATEWAY_OPERATOR_LABEL_FILTER",
        value_delimiter = ','
    )]
    label_filter: Option<Vec<String>>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Render manifests offline and print the stunnerd configs, the generated objects
    /// and the statuses as YAML.
    Render {
        #[command(flatten)]
        flags: RenderFlags,
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
        /// CDS listen address.
        #[arg(long, default_value = ":13478")]
        config_discovery_address: String,
        /// How often the manifest files are checked for changes.
        #[arg(long, default_value = "1s", value_parser = parse_duration)]
        poll_interval: Duration,
    },
    /// Print the STUNner CRD manifests.
    Crds,
}

/// Parses `250ms`, `1s`, `2m` or plain seconds.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, unit) = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .map_or((s, "s"), |i| s.split_at(i));
    let v: f64 = num.parse().map_err(|_| format!("invalid duration {s:?}"))?;
    let secs = match unit {
        "ms" => v / 1000.0,
        "s" => v,
        "m" => v * 60.0,
        _ => return Err(format!("invalid duration unit in {s:?} (ms, s, m)")),
    };
    if !(0.01..=3600.0).contains(&secs) {
        return Err(format!("duration {s:?} out of range (10ms..1h)"));
    }
    Ok(Duration::from_secs_f64(secs))
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
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .try_init();
    match args.command {
        Command::Crds => match stunner_gateway::crd::crds_yaml() {
            Ok(y) => emit(&y),
            Err(e) => fail(e),
        },
        Command::Render {
            flags,
            cds_service_address,
        } => {
            let mut opts = match flags.options(&cds_service_address) {
                Ok(o) => o,
                Err(e) => return fail(e),
            };
            opts.now = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::now(),
            );
            match crate::standalone::render_files(&flags.files, &opts)
                .and_then(|d| Ok(d.to_yaml()?))
            {
                Ok(y) => emit(&y),
                Err(e) => fail(e),
            }
        }
        Command::Standalone {
            flags,
            config_discovery_address,
            poll_interval,
        } => {
            let addr = listen_addr(&config_discovery_address);
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
                tracing::info!(target: "operator", %addr, "standalone: serving CDS");
                match crate::standalone::run(flags.files, opts, listener, poll_interval).await {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => fail(e),
                }
            })
        }
    }
}
