//! The agent's shared state: what every pod task, the kubelet API and the service proxy
//! read.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use tokio::sync::watch;

use crate::cluster::Lookup;
use crate::container::LaunchSpec;
use crate::image::Images;
use crate::netns::{Hub, PodNetwork};

/// Settings and shared state of one node agent.
pub struct Agent {
    /// The agent's client (cluster-admin in the test control plane).
    pub client: kube::Client,
    /// The Node this agent registers and runs pods for.
    pub node: String,
    /// Image → executable table.
    pub images: Images,
    /// Pod namespaces and addresses.
    pub net: PodNetwork,
    /// Socket factory in the node's namespace.
    pub hub: Hub,
    /// Name of the node's namespace.
    pub hub_netns: String,
    /// Where pods' volumes, logs and files live.
    pub state: PathBuf,
    /// ConfigMap, Secret and token reads.
    pub lookup: Lookup,
    /// The cluster DNS server's address (the agent's own).
    pub dns_ip: String,
    /// Cluster domain (`cluster.local`).
    pub domain: String,
    /// ClusterIP and port of the `kubernetes` Service.
    pub api_service: (String, u16),
    /// The node's external address (published for NodePorts).
    pub external_ip: String,
    /// This executable, re-run as `launch` for every container.
    pub self_exe: PathBuf,
    /// Running pods by UID.
    pub pods: Mutex<HashMap<String, PodEntry>>,
    /// Mount points the agent had to create on the host, removed at shutdown.
    pub created: Mutex<Vec<PathBuf>>,
}

/// A running pod as other parts of the agent see it.
pub struct PodEntry {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Pod IP, once the network is up.
    pub ip: Option<IpAddr>,
    /// State directory (logs under `logs/<container>.log`).
    pub dir: PathBuf,
    /// Asks the pod task to stop: the grace period in seconds.
    pub stop: watch::Sender<Option<i64>>,
    /// How each container (by name) is started, once the pod is configured: what
    /// `exec` runs a command with.
    pub launch: HashMap<String, LaunchSpec>,
}

impl Agent {
    /// The IP and state directory of pod `ns/name`, if it runs here.
    pub fn find(&self, ns: &str, name: &str) -> Option<(Option<IpAddr>, PathBuf)> {
        let pods = self.pods.lock().ok()?;
        pods.values()
            .find(|p| p.namespace == ns && p.name == name)
            .map(|p| (p.ip, p.dir.clone()))
    }

    /// How container `container` of pod `ns/name` is started, if the pod runs here and
    /// is configured.
    pub fn launch(&self, ns: &str, name: &str, container: &str) -> Option<LaunchSpec> {
        let pods = self.pods.lock().ok()?;
        pods.values()
            .find(|p| p.namespace == ns && p.name == name)
            .and_then(|p| p.launch.get(container).cloned())
    }

    /// Makes sure `target` exists on the host so that a bind mount has somewhere to go,
    /// remembering what it created.
    pub fn ensure_mountpoint(&self, target: &Path, is_file: bool) -> std::io::Result<()> {
        if target.exists() {
            return Ok(());
        }
        // The first missing ancestor is what cleanup must remove.
        let mut first_missing = target.to_path_buf();
        while let Some(parent) = first_missing.parent() {
            if parent.exists() {
                break;
            }
            first_missing = parent.to_path_buf();
        }
        if is_file {
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(target, b"")?;
        } else {
            std::fs::create_dir_all(target)?;
        }
        if let Ok(mut c) = self.created.lock() {
            c.push(first_missing);
        }
        Ok(())
    }

    /// Removes the mount points created on the host (only while nothing is mounted there).
    pub fn remove_mountpoints(&self) {
        let list = self
            .created
            .lock()
            .map(|mut c| std::mem::take(&mut *c))
            .unwrap_or_default();
        for p in list.iter().rev() {
            if p.is_dir() {
                let _ = remove_empty_tree(p);
            } else {
                let _ = std::fs::remove_file(p);
            }
        }
    }
}

/// Removes a tree of directories and empty files; stops at anything with content.
fn remove_empty_tree(p: &Path) -> std::io::Result<()> {
    for e in std::fs::read_dir(p)?.flatten() {
        let path = e.path();
        if path.is_dir() {
            remove_empty_tree(&path)?;
        } else if e.metadata().map(|m| m.len() == 0).unwrap_or(false) {
            std::fs::remove_file(&path)?;
        }
    }
    std::fs::remove_dir(p)
}

/// Now, as the API's `metav1.Time` (RFC 3339, whole seconds).
pub fn now() -> String {
    let t = jiff::Timestamp::now();
    jiff::Timestamp::from_second(t.as_second())
        .map(|t| t.to_string())
        .unwrap_or_else(|_| t.to_string())
}
