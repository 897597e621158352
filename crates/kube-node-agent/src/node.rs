//! The Node object, its heartbeats (status and Lease), and the watch that starts and stops
//! the pod tasks of the pods bound to it (binding is `scheduler.rs`).

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Api;
use kube::api::{Patch, PatchParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use serde_json::json;

use crate::agent::{Agent, now};
use crate::error::Result;
use crate::pod;

const MANAGER: &str = "kube-node-agent";

/// Creates or updates the Node, then keeps its status and Lease fresh.
pub async fn register(agent: &Agent, kubelet_port: u16) -> Result<()> {
    let nodes: Api<Node> = Api::all(agent.client.clone());
    let body = json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": agent.node,
            "labels": {
                "kubernetes.io/hostname": agent.node,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": std::env::consts::ARCH.replace("x86_64", "amd64").replace("aarch64", "arm64"),
                "node.kubernetes.io/instance-type": "process",
            },
        },
        "spec": {},
    });
    nodes
        .patch(
            &agent.node,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&body),
        )
        .await?;
    heartbeat(agent, kubelet_port).await
}

/// One heartbeat: Node status (Ready, addresses, capacity) and the node Lease.
pub async fn heartbeat(agent: &Agent, kubelet_port: u16) -> Result<()> {
    let nodes: Api<Node> = Api::all(agent.client.clone());
    let t = now();
    let cond = |kind: &str, status: &str, reason: &str| {
        json!({"type": kind, "status": status, "reason": reason, "message": reason,
               "lastHeartbeatTime": t, "lastTransitionTime": t})
    };
    let capacity =
        json!({"cpu": "2", "memory": "24Gi", "pods": "110", "ephemeral-storage": "50Gi"});
    let status = json!({
        "status": {
            "conditions": [
                cond("Ready", "True", "KubeletReady"),
                cond("MemoryPressure", "False", "KubeletHasSufficientMemory"),
                cond("DiskPressure", "False", "KubeletHasNoDiskPressure"),
                cond("PIDPressure", "False", "KubeletHasSufficientPID"),
            ],
            // InternalIP is the pod bridge (what pods and host-network pods see);
            // ExternalIP is where clients outside reach NodePorts; Hostname is how the
            // API server reaches this agent's kubelet endpoint on loopback.
            "addresses": [
                {"type": "InternalIP", "address": agent.net.gateway().to_string()},
                {"type": "ExternalIP", "address": agent.external_ip},
                {"type": "Hostname", "address": "localhost"},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": kubelet_port}},
            "capacity": capacity,
            "allocatable": capacity,
            "nodeInfo": {
                "machineID": "", "systemUUID": "", "bootID": "", "kernelVersion": "",
                "osImage": "kube-node-agent", "containerRuntimeVersion": "process://",
                "kubeletVersion": "v1.37.2", "kubeProxyVersion": "", "operatingSystem": "linux",
                "architecture": "amd64",
            },
        }
    });
    // Conditions merge by type only with a strategic merge patch.
    nodes
        .patch_status(
            &agent.node,
            &PatchParams::default(),
            &Patch::Strategic(status),
        )
        .await?;
    let leases: Api<Lease> = Api::namespaced(agent.client.clone(), "kube-node-lease");
    let micro = jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string();
    let lease = json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": agent.node, "namespace": "kube-node-lease"},
        "spec": {"holderIdentity": agent.node, "leaseDurationSeconds": 40, "renewTime": micro},
    });
    leases
        .patch(
            &agent.node,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&lease),
        )
        .await?;
    Ok(())
}

/// Heartbeats every 10 s, forever.
pub async fn heartbeats(agent: Arc<Agent>, kubelet_port: u16) {
    let mut tick = tokio::time::interval(Duration::from_secs(10));
    loop {
        tick.tick().await;
        if let Err(e) = heartbeat(&agent, kubelet_port).await {
            tracing::warn!(error = %e, "node heartbeat");
        }
    }
}

/// Watches the pods bound to this node: starts new ones, stops deleted ones.
pub async fn pods(agent: Arc<Agent>) {
    let api: Api<Pod> = Api::all(agent.client.clone());
    let cfg = watcher::Config::default().fields(&format!("spec.nodeName={}", agent.node));
    let mut stream = watcher::watcher(api, cfg).default_backoff().boxed();
    while let Some(ev) = stream.next().await {
        match ev {
            Ok(Event::Apply(p) | Event::InitApply(p)) => {
                let uid = p.metadata.uid.clone().unwrap_or_default();
                if p.metadata.deletion_timestamp.is_some() {
                    let grace = p.metadata.deletion_grace_period_seconds.unwrap_or(30);
                    let running = agent
                        .pods
                        .lock()
                        .map(|m| m.contains_key(&uid))
                        .unwrap_or(false);
                    if running {
                        pod::stop(&agent, &uid, grace);
                    } else {
                        // Nothing runs for it here: finish the deletion at once.
                        let api: Api<Pod> = Api::namespaced(
                            agent.client.clone(),
                            p.metadata.namespace.as_deref().unwrap_or(""),
                        );
                        let _ = api
                            .delete(
                                p.metadata.name.as_deref().unwrap_or(""),
                                &kube::api::DeleteParams {
                                    grace_period_seconds: Some(0),
                                    ..Default::default()
                                },
                            )
                            .await;
                    }
                    continue;
                }
                let phase = p
                    .status
                    .as_ref()
                    .and_then(|s| s.phase.clone())
                    .unwrap_or_default();
                let running = agent
                    .pods
                    .lock()
                    .map(|m| m.contains_key(&uid))
                    .unwrap_or(true);
                if !running && phase != "Succeeded" && phase != "Failed" {
                    pod::start(&agent, p);
                }
            }
            Ok(Event::Delete(p)) => {
                pod::stop(&agent, p.metadata.uid.as_deref().unwrap_or(""), 0);
            }
            Ok(_) => {}
            Err(e) => tracing::debug!(error = %e, "pod watch"),
        }
    }
}
