//! Command line and environment, compatible with the Go stunnerd.

use clap::Parser;

/// stunnerd: the STUNner-rs dataplane, a TURN server for Kubernetes.
#[derive(Debug, Clone, Parser)]
#[command(name = "stunnerd", version, about, long_about = None)]
pub struct Args {
    /// Config origin: `file://<path>`, a CDS server (`http://`, `ws://`, `host:port`, or
    /// `https://`, `wss://` for TLS, verified against `--cds-ca-file`).
    /// A bare path (`/etc/stunnerd.conf`) is read as a file; upstream would take it for
    /// a CDS address. Default: $STUNNER_CONFIG_ORIGIN, else `:13478`.
    #[arg(short = 'c', long = "config", env = "STUNNER_CONFIG_ORIGIN")]
    pub config: Option<String>,

    /// PEM CA bundle that verifies a TLS CDS server (`https://`, `wss://` origins);
    /// default: the system's roots.
    #[arg(long = "cds-ca-file", env = "STUNNER_CDS_CA_FILE")]
    pub cds_ca_file: Option<std::path::PathBuf>,

    /// The same CA bundle as PEM text, used when `--cds-ca-file` is unset (the operator
    /// renders it into dataplane pods when its CDS serves TLS).
    #[arg(long = "cds-ca", env = "STUNNER_CDS_CA", hide_env_values = true)]
    pub cds_ca: Option<String>,

    /// Watch the origin and apply every change (starts on an empty config).
    #[arg(short = 'w', long)]
    pub watch: bool,

    /// Instance id `<namespace>/<name>`; default $STUNNER_NAMESPACE/$STUNNER_NAME.
    #[arg(short = 'i', long)]
    pub id: Option<String>,

    /// SO_REUSEPORT sockets (one worker thread each) per TURN-UDP listener; 0 is one
    /// socket.
    #[arg(short = 'u', long = "udp-thread-num", default_value_t = 0)]
    pub udp_thread_num: usize,

    /// Log level spec `<scope>:<LEVEL>[,…]` (e.g. `all:INFO,turn:DEBUG`); overrides the
    /// config's `admin.loglevel`.
    #[arg(short = 'l', long = "log")]
    pub log: Option<String>,

    /// Log format.
    #[arg(long = "log-format", default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,

    /// Load, validate and plan the config, print what would run (secrets masked) and
    /// exit, opening no socket. Exits non-zero on a bad config.
    #[arg(short = 'd', long = "dry-run")]
    pub dry_run: bool,

    /// Keep `/ready` at 200 while draining (for kube-proxies that stop UDP to not-ready
    /// pods).
    #[arg(long = "force-ready-status")]
    pub force_ready_status: bool,

    /// Also accept DTLS 1.0 on TURN-DTLS listeners (deprecated by RFC 8996; for old
    /// clients such as coturn's turnutils_uclient). Default: DTLS 1.2 only.
    #[arg(long = "dtls-legacy")]
    pub dtls_legacy: bool,

    /// The pod's IP addresses, comma-separated (the operator sets $STUNNER_POD_IPS from
    /// the downward API's `status.podIPs`). A listener relays in its address's family;
    /// the first of these of the other family is the relay address for clients that
    /// ask for that family or for both (RFC 8656 §7.2). Unset or empty: one family only.
    #[arg(long = "pod-addresses", env = "STUNNER_POD_IPS", default_value = "", value_parser = pod_addresses, hide_default_value = true)]
    pub pod_addresses: PodAddresses,

    /// Verbose: same as `-l all:DEBUG`.
    #[arg(short = 'v', long)]
    pub verbose: bool,

    /// A TURN URI (`turn://user:pass@host:port?transport=udp`) for a one-line server;
    /// `-c` and `-w` are then ignored.
    pub uri: Option<String>,
}

impl Args {
    /// How a TLS CDS server is verified.
    pub fn cds_trust(&self) -> stunner_cds::client::Trust {
        stunner_cds::client::Trust {
            ca_file: self.cds_ca_file.clone(),
            ca_pem: self.cds_ca.clone().filter(|p| !p.trim().is_empty()),
        }
    }

    /// The instance id.
    pub fn instance_id(&self) -> String {
        if let Some(id) = &self.id {
            return id.clone();
        }
        match (
            std::env::var("STUNNER_NAMESPACE"),
            std::env::var("STUNNER_NAME"),
        ) {
            (Ok(ns), Ok(n)) if !ns.is_empty() && !n.is_empty() => format!("{ns}/{n}"),
            _ => {
                let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                    .map(|h| h.trim().to_string())
                    .unwrap_or_else(|_| "unknown".into());
                format!("default/stunnerd-{host}")
            }
        }
    }

    /// The log level spec in force: `-l`, else `-v`, else `None` (the config's).
    pub fn log_override(&self) -> Option<String> {
        self.log
            .clone()
            .or_else(|| self.verbose.then(|| "all:DEBUG".to_string()))
    }
}

/// The pod's IP addresses (`--pod-addresses`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodAddresses(pub Vec<std::net::IpAddr>);

/// Parses a comma-separated address list; empty items (and an empty list) are skipped.
fn pod_addresses(s: &str) -> Result<PodAddresses, String> {
    s.split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(|a| a.parse().map_err(|_| format!("{a:?} is not an IP address")))
        .collect::<Result<_, _>>()
        .map(PodAddresses)
}
