//! Where configs come from: a file (read once, or watched), or a CDS server.

use std::path::{Path, PathBuf};
use std::time::Duration;

use stunner_config::StunnerConfig;
use tokio::sync::mpsc;

use crate::Error;

/// A config origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A local file.
    File(PathBuf),
    /// A config discovery server (the operator), as a base URL.
    Cds(String),
    /// `k8s`: the CDS found through the Kubernetes API and port-forwarded.
    K8s,
}

impl Origin {
    /// Reads `-c`: `file://path` or a bare path is a file; `http(s)://`, `ws(s)://`
    /// and `host:port` are CDS servers.
    pub fn parse(s: &str) -> Self {
        if s == "k8s" {
            return Self::K8s;
        }
        if let Some(p) = s.strip_prefix("file://") {
            return Self::File(PathBuf::from(p));
        }
        let lower = s.to_ascii_lowercase();
        if ["http://", "https://", "ws://", "wss://"]
            .iter()
            .any(|p| lower.starts_with(p))
        {
            return Self::Cds(s.to_string());
        }
        let host_port = s.rsplit_once(':').is_some_and(|(h, p)| {
            !h.contains('/') && !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())
        });
        if host_port {
            Self::Cds(format!("http://{s}"))
        } else {
            Self::File(PathBuf::from(s))
        }
    }
}

/// Reads and validates a config file.
pub fn load_file(path: &Path) -> Result<StunnerConfig, Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
        origin: path.display().to_string(),
        source,
    })?;
    if text.trim().is_empty() {
        return Err(Error::Read {
            origin: path.display().to_string(),
            source: std::io::Error::other("file is empty"),
        });
    }
    Ok(StunnerConfig::from_str(&text)?)
}

/// Watches a file: sends its config now and after every change of its content. The
/// file is polled every `period`, which also follows the atomic symlink swap Kubernetes
/// uses for mounted ConfigMaps. An empty, missing or invalid file is logged and skipped:
/// the running config stays.
pub fn watch_file(path: PathBuf, period: Duration, tx: mpsc::Sender<StunnerConfig>) {
    std::thread::Builder::new()
        .name("config-file".into())
        .spawn(move || {
            let mut last: Option<String> = None;
            let mut warned = false;
            loop {
                match std::fs::read_to_string(&path) {
                    Ok(text) if text.trim().is_empty() => {}
                    Ok(text) if last.as_deref() != Some(text.as_str()) => {
                        warned = false;
                        match StunnerConfig::from_str(&text) {
                            Ok(c) => {
                                if tx.blocking_send(c).is_err() {
                                    return;
                                }
                            }
                            Err(e) => tracing::error!(target: "config-file-client",
                                file = %path.display(), "invalid config, keeping the running one: {e}"),
                        }
                        last = Some(text);
                    }
                    Ok(_) => {}
                    Err(e) => {
                        if !warned {
                            tracing::warn!(target: "config-file-client", file = %path.display(), error = %e, "cannot read config");
                            warned = true;
                        }
                    }
                }
                if tx.is_closed() {
                    return;
                }
                std::thread::sleep(period);
            }
        })
        .map(|_| ())
        .unwrap_or_else(|e| tracing::error!(target: "config-file-client", error = %e, "cannot start watcher"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins() {
        assert_eq!(
            Origin::parse("file:///etc/x.conf"),
            Origin::File("/etc/x.conf".into())
        );
        assert_eq!(
            Origin::parse("/etc/x.conf"),
            Origin::File("/etc/x.conf".into())
        );
        assert_eq!(
            Origin::parse("stunnerd.conf"),
            Origin::File("stunnerd.conf".into())
        );
        assert_eq!(Origin::parse(":13478"), Origin::Cds("http://:13478".into()));
        assert_eq!(
            Origin::parse("10.0.0.1:13478"),
            Origin::Cds("http://10.0.0.1:13478".into())
        );
        assert_eq!(
            Origin::parse("ws://cds:13478"),
            Origin::Cds("ws://cds:13478".into())
        );
        assert_eq!(
            Origin::parse("HTTP://cds"),
            Origin::Cds("HTTP://cds".into())
        );
    }
}
