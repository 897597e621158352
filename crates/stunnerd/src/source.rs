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

/// Watches a file: sends its config now and after every change of its content. Changes
/// are noticed through `notify` (inotify here) on the file's directory, and on the
/// directory of the file a symlink points to, so an atomic rename over the file and the
/// `..data` symlink swap of a mounted ConfigMap are both seen at once; the file is also
/// re-read every `fallback`, for what events cannot tell (a watch that could not start, a
/// directory replaced). An empty, missing or invalid file is logged and skipped: the
/// running config stays.
pub fn watch_file(path: PathBuf, fallback: Duration, tx: mpsc::Sender<StunnerConfig>) {
    std::thread::Builder::new()
        .name("config-file".into())
        .spawn(move || {
            let (ev_tx, ev_rx) = std::sync::mpsc::channel::<()>();
            // Kept for the life of the thread; dropping it ends the watch.
            let _watcher = watch_dirs(&path, ev_tx);
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
                match ev_rx.recv_timeout(fallback) {
                    // A burst of events (a write in pieces, a swap in three steps) is
                    // read once, after it settles.
                    Ok(()) => {
                        std::thread::sleep(SETTLE);
                        while ev_rx.try_recv().is_ok() {}
                    }
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                    // No watcher (it could not start): poll.
                    Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                        std::thread::sleep(fallback);
                    }
                }
            }
        })
        .map(|_| ())
        .unwrap_or_else(|e| tracing::error!(target: "config-file-client", error = %e, "cannot start watcher"));
}

/// How long a burst of file events is let settle before the file is read.
const SETTLE: Duration = Duration::from_millis(50);

/// A watcher on the directory of `path` and, when `path` is a symlink, on the directory
/// of its target; each event pings `ev`. `None` (logged) when no watch could be set up.
fn watch_dirs(path: &Path, ev: std::sync::mpsc::Sender<()>) -> Option<notify::RecommendedWatcher> {
    use notify::Watcher as _;
    let mut w = match notify::recommended_watcher(move |_: notify::Result<notify::Event>| {
        let _ = ev.send(());
    }) {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(target: "config-file-client", file = %path.display(), error = %e,
                "cannot watch for changes; re-reading on the fallback period only");
            return None;
        }
    };
    let mut dirs = Vec::new();
    let parent = |p: &Path| match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    dirs.push(parent(path));
    if let Ok(target) = std::fs::canonicalize(path) {
        let d = parent(&target);
        if !dirs.contains(&d) {
            dirs.push(d);
        }
    }
    let mut watching = false;
    for d in &dirs {
        match w.watch(d, notify::RecursiveMode::NonRecursive) {
            Ok(()) => watching = true,
            Err(e) => tracing::warn!(target: "config-file-client", dir = %d.display(), error = %e,
                "cannot watch for changes"),
        }
    }
    watching.then_some(w)
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
