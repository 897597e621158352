//! The scheduler of a one-node cluster, with the two filters of kube-scheduler that a test
//! here can meet: the pod's `nodeSelector` must match the node's labels (NodeAffinity),
//! and its host ports must be free on the node (NodePorts). A pod that does not fit stays
//! Pending with `PodScheduled=False` (reason `Unschedulable`), as kube-scheduler leaves
//! it, and is tried again whenever a pod of the node changes and every few seconds.
//!
//! Host ports are counted as kube-scheduler counts them: every pod bound to the node that
//! has not finished holds its ports, a Terminating one included, until it is gone from the
//! API. For a `hostNetwork` pod the API server has already set `hostPort` to each
//! `containerPort`, so a draining hostNetwork stunnerd keeps its successor Pending.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use serde_json::json;

use crate::agent::{Agent, now};

/// One host port a pod asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostPort {
    /// `TCP`, `UDP` or `SCTP`.
    pub protocol: String,
    /// The host address; unspecified means every address.
    pub ip: IpAddr,
    /// The port.
    pub port: i32,
}

impl HostPort {
    /// Whether the two cannot be held at once (kube-scheduler's rule: same protocol and
    /// port, and one of the addresses is the wildcard or both are the same).
    fn conflicts(&self, other: &Self) -> bool {
        self.protocol == other.protocol
            && self.port == other.port
            && (self.ip.is_unspecified() || other.ip.is_unspecified() || self.ip == other.ip)
    }
}

impl std::fmt::Display for HostPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.port, self.protocol)
    }
}

/// The host ports of a pod's containers (kube-scheduler's NodePorts filter reads the
/// containers' `ports`; a `hostPort` of 0 asks for none).
pub fn host_ports(pod: &Pod) -> Vec<HostPort> {
    let Some(spec) = &pod.spec else {
        return Vec::new();
    };
    spec.containers
        .iter()
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| {
            let port = p.host_port.filter(|&h| h > 0)?;
            let ip = p
                .host_ip
                .as_deref()
                .and_then(|ip| ip.parse().ok())
                .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
            Some(HostPort {
                protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                ip,
                port,
            })
        })
        .collect()
}

/// Why a pod does not fit the node.
#[derive(Debug, PartialEq, Eq)]
pub enum Unfit {
    /// The nodeSelector asks for labels the node does not have.
    Selector,
    /// Host ports already held on the node.
    Ports(Vec<HostPort>),
}

impl Unfit {
    /// kube-scheduler's message for a one-node cluster.
    pub fn message(&self) -> String {
        match self {
            Self::Selector => "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector.".into(),
            Self::Ports(_) => "0/1 nodes are available: 1 node(s) didn't have free ports for the requested pod ports.".into(),
        }
    }
}

/// Whether `pod` fits a node with `labels` whose pods already hold `used`.
pub fn fit(pod: &Pod, labels: &BTreeMap<String, String>, used: &[HostPort]) -> Result<(), Unfit> {
    let selected = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_selector.as_ref())
        .is_none_or(|sel| sel.iter().all(|(k, v)| labels.get(k) == Some(v)));
    if !selected {
        return Err(Unfit::Selector);
    }
    let taken: Vec<HostPort> = host_ports(pod)
        .into_iter()
        .filter(|p| used.iter().any(|u| u.conflicts(p)))
        .collect();
    if taken.is_empty() {
        Ok(())
    } else {
        Err(Unfit::Ports(taken))
    }
}

fn finished(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

fn key(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.name.as_deref().unwrap_or_default()
    )
}

/// Binds the unscheduled pods that fit, oldest first (each bound pod's ports count against
/// the next); marks the others Unschedulable. Returns how many were left pending.
async fn pass(agent: &Agent, said: &mut BTreeMap<String, String>) -> kube::Result<usize> {
    let pods: Api<Pod> = Api::all(agent.client.clone());
    let mut pending = pods
        .list(&ListParams::default().fields("spec.nodeName="))
        .await?
        .items;
    pending.retain(|p| p.metadata.deletion_timestamp.is_none());
    if pending.is_empty() {
        said.clear();
        return Ok(0);
    }
    pending.sort_by(|a, b| {
        let t = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
        t(a).cmp(&t(b)).then_with(|| key(a).cmp(&key(b)))
    });
    let on_node = pods
        .list(&ListParams::default().fields(&format!("spec.nodeName={}", agent.node)))
        .await?;
    let mut used: Vec<HostPort> = on_node
        .items
        .iter()
        .filter(|p| !finished(p))
        .flat_map(host_ports)
        .collect();
    let nodes: Api<Node> = Api::all(agent.client.clone());
    let labels = nodes
        .get(&agent.node)
        .await?
        .metadata
        .labels
        .unwrap_or_default();
    let mut left = 0;
    for pod in &pending {
        let k = key(pod);
        match fit(pod, &labels, &used) {
            Ok(()) => {
                if bind(agent, pod).await {
                    used.extend(host_ports(pod));
                    said.remove(&k);
                }
            }
            Err(why) => {
                left += 1;
                let msg = why.message();
                if said.get(&k) != Some(&msg) {
                    if let Unfit::Ports(p) = &why {
                        let p: Vec<String> = p.iter().map(ToString::to_string).collect();
                        tracing::info!(pod = %k, ports = %p.join(","), "host ports in use on the node; left pending");
                    } else {
                        tracing::warn!(pod = %k, "nodeSelector does not match the node; left pending");
                    }
                    unschedulable(agent, pod, &msg).await;
                    said.insert(k, msg);
                }
            }
        }
    }
    Ok(left)
}

async fn bind(agent: &Agent, pod: &Pod) -> bool {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let binding = json!({
        "apiVersion": "v1", "kind": "Binding",
        "metadata": {"name": name, "namespace": ns, "uid": pod.metadata.uid},
        "target": {"apiVersion": "v1", "kind": "Node", "name": agent.node},
    });
    let api: Api<Pod> = Api::namespaced(agent.client.clone(), &ns);
    match api
        .create_subresource::<_, serde_json::Value>(
            "binding",
            &name,
            &PostParams::default(),
            &binding,
        )
        .await
    {
        Ok(_) => {
            tracing::info!(pod = %format!("{ns}/{name}"), node = %agent.node, "bound");
            true
        }
        Err(e) => {
            tracing::debug!(pod = %format!("{ns}/{name}"), error = %e, "bind");
            false
        }
    }
}

/// `PodScheduled=False`, as kube-scheduler writes it (`kubectl describe` shows why).
async fn unschedulable(agent: &Agent, pod: &Pod, message: &str) {
    let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(agent.client.clone(), ns);
    let patch = json!({"status": {"conditions": [{
        "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
        "message": message, "lastTransitionTime": now(),
    }]}});
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    if let Err(e) = api
        .patch_status(name, &PatchParams::default(), &Patch::Strategic(&patch))
        .await
    {
        tracing::debug!(pod = %key(pod), error = %e, "PodScheduled condition");
    }
}

/// Runs the scheduler: a pass on every change of a pod (an unscheduled one appears, or one
/// of the node's goes and frees its ports), and every 2 s while some pod is left pending.
pub async fn run(agent: Arc<Agent>) {
    let pods: Api<Pod> = Api::all(agent.client.clone());
    let mut events = watcher::watcher(pods, watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut retry = tokio::time::interval(Duration::from_secs(2));
    let mut said = BTreeMap::new();
    let mut pending = 0;
    loop {
        tokio::select! {
            ev = events.next() => match ev {
                Some(Ok(Event::Apply(_) | Event::Delete(_) | Event::InitDone)) => {}
                Some(Ok(_)) => continue,
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "scheduler watch");
                    continue;
                }
                None => return,
            },
            _ = retry.tick() => if pending == 0 { continue },
        }
        match pass(&agent, &mut said).await {
            Ok(n) => pending = n,
            Err(e) => {
                tracing::debug!(error = %e, "scheduling pass");
                pending = 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, ContainerPort, PodSpec};

    fn pod(ports: &[(&str, i32, Option<&str>)], selector: Option<(&str, &str)>) -> Pod {
        let ports = ports
            .iter()
            .map(|(proto, port, ip)| ContainerPort {
                container_port: *port,
                host_port: Some(*port),
                host_ip: ip.map(str::to_string),
                protocol: Some((*proto).into()),
                ..Default::default()
            })
            .collect();
        Pod {
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "c".into(),
                    ports: Some(ports),
                    ..Default::default()
                }],
                node_selector: selector.map(|(k, v)| BTreeMap::from([(k.into(), v.into())])),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn labels() -> BTreeMap<String, String> {
        BTreeMap::from([("kubernetes.io/os".into(), "linux".into())])
    }

    #[test]
    fn a_pod_whose_host_port_is_held_does_not_fit() {
        let old = pod(&[("TCP", 8080, None)], None);
        let new = pod(&[("TCP", 8080, None), ("UDP", 3478, None)], None);
        let used = host_ports(&old);
        let err = fit(&new, &labels(), &used).unwrap_err();
        assert_eq!(err, Unfit::Ports(host_ports(&old)));
        assert!(err.message().contains("didn't have free ports"));
    }

    #[test]
    fn other_protocols_and_other_addresses_do_not_conflict() {
        let used = host_ports(&pod(&[("TCP", 3478, Some("10.0.0.1"))], None));
        assert_eq!(
            fit(&pod(&[("UDP", 3478, None)], None), &labels(), &used),
            Ok(())
        );
        assert_eq!(
            fit(
                &pod(&[("TCP", 3478, Some("10.0.0.2"))], None),
                &labels(),
                &used
            ),
            Ok(())
        );
        // The wildcard overlaps every address.
        assert!(fit(&pod(&[("TCP", 3478, None)], None), &labels(), &used).is_err());
    }

    #[test]
    fn container_ports_without_a_host_port_ask_for_nothing() {
        let mut p = pod(&[("TCP", 8080, None)], None);
        if let Some(s) = p.spec.as_mut() {
            s.containers[0]
                .ports
                .as_mut()
                .into_iter()
                .flatten()
                .for_each(|c| c.host_port = None);
        }
        assert!(host_ports(&p).is_empty());
    }

    #[test]
    fn the_node_selector_must_match() {
        assert_eq!(
            fit(
                &pod(&[], Some(("kubernetes.io/os", "linux"))),
                &labels(),
                &[]
            ),
            Ok(())
        );
        assert_eq!(
            fit(&pod(&[], Some(("disk", "ssd"))), &labels(), &[]),
            Err(Unfit::Selector)
        );
    }
}
