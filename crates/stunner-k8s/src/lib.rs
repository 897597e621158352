//! Finds STUNner's servers through the Kubernetes API and port-forwards to them, so
//! `stunnerctl` and `turncat` work against a cluster without explicit addresses, as
//! upstream's do: the config discovery service (pods labelled
//! `stunner.l7mp.io/config-discovery-service=enabled`, port 13478), the auth service
//! (`app=stunner-auth`, 8088) and a Gateway's stunnerd pods (`app=stunner` and the
//! related-gateway labels, health port 8086).
//!
//! [`forward`] returns a local address; every TCP connection to it is carried over its
//! own port-forward to the chosen pod, for as long as the runtime runs.

use std::net::SocketAddr;

use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::{Api, Client};

/// What to reach.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// The config discovery service (any operator replica serves it).
    Cds,
    /// The auth service.
    Auth,
    /// A stunnerd pod of a Gateway (its health/status port).
    Dataplane {
        /// Gateway namespace.
        namespace: String,
        /// Gateway name.
        gateway: String,
    },
}

impl Target {
    fn selector(&self) -> String {
        match self {
            Self::Cds => "stunner.l7mp.io/config-discovery-service=enabled".into(),
            Self::Auth => "app=stunner-auth".into(),
            Self::Dataplane { namespace, gateway } => format!(
                "app=stunner,stunner.l7mp.io/related-gateway-name={gateway},stunner.l7mp.io/related-gateway-namespace={namespace}"
            ),
        }
    }

    /// The container port.
    pub fn port(&self) -> u16 {
        match self {
            Self::Cds => 13478,
            Self::Auth => 8088,
            Self::Dataplane { .. } => 8086,
        }
    }
}

/// What can go wrong.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No usable Kubernetes configuration.
    #[error("no Kubernetes API (kubeconfig or in-cluster): {0}")]
    Config(String),
    /// The API refused or failed.
    #[error("Kubernetes API: {0}")]
    Api(String),
    /// No running pod matches.
    #[error("no running pod with labels {selector}{}", .namespace.as_ref().map(|n| format!(" in namespace {n}")).unwrap_or_default())]
    NotFound {
        /// The label selector.
        selector: String,
        /// The namespace searched (all when `None`).
        namespace: Option<String>,
    },
    /// The local listener could not be opened.
    #[error("local port: {0}")]
    Local(String),
}

/// A client from the kubeconfig or the in-cluster config.
pub async fn client() -> Result<Client, Error> {
    Client::try_default()
        .await
        .map_err(|e| Error::Config(e.to_string()))
}

/// The name and namespace of a running pod for `target`; ready pods first. Upstream's
/// tools fail with several CDS pods ("too many CDS servers"); every replica of our
/// operator serves CDS, so any will do.
pub async fn find_pod(
    client: &Client,
    target: &Target,
    namespace: Option<&str>,
) -> Result<(String, String), Error> {
    let api: Api<Pod> = match (target, namespace) {
        (Target::Dataplane { namespace, .. }, _) => Api::namespaced(client.clone(), namespace),
        (_, Some(ns)) => Api::namespaced(client.clone(), ns),
        (_, None) => Api::all(client.clone()),
    };
    let selector = target.selector();
    let pods = api
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(|e| Error::Api(e.to_string()))?;
    let ready = |p: &Pod| {
        p.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
    };
    let running = |p: &Pod| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
    let mut candidates: Vec<&Pod> = pods.items.iter().filter(|p| running(p)).collect();
    candidates.sort_by_key(|p| !ready(p));
    let pod = candidates.first().ok_or_else(|| Error::NotFound {
        selector: selector.clone(),
        namespace: match target {
            Target::Dataplane { namespace, .. } => Some(namespace.clone()),
            _ => namespace.map(str::to_string),
        },
    })?;
    Ok((
        pod.metadata.namespace.clone().unwrap_or_default(),
        pod.metadata.name.clone().unwrap_or_default(),
    ))
}

/// [`client`] then [`forward`]: the one call the tools make when no address is given.
pub async fn discover(target: &Target, namespace: Option<&str>) -> Result<SocketAddr, Error> {
    forward(client().await?, target, namespace).await
}

/// Port-forwards a local port on 127.0.0.1 to `target`'s pod; returns the local address.
pub async fn forward(
    client: Client,
    target: &Target,
    namespace: Option<&str>,
) -> Result<SocketAddr, Error> {
    let (ns, name) = find_pod(&client, target, namespace).await?;
    let port = target.port();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| Error::Local(e.to_string()))?;
    let local = listener
        .local_addr()
        .map_err(|e| Error::Local(e.to_string()))?;
    tracing::debug!(target: "k8s", pod = %format!("{ns}/{name}"), port, %local, "port-forward");
    let api: Api<Pod> = Api::namespaced(client, &ns);
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let (api, name) = (api.clone(), name.clone());
            tokio::spawn(async move {
                let mut pf = match api.portforward(&name, &[port]).await {
                    Ok(pf) => pf,
                    Err(e) => {
                        tracing::warn!(target: "k8s", error = %e, "port-forward failed");
                        return;
                    }
                };
                let Some(mut upstream) = pf.take_stream(port) else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut conn, &mut upstream).await;
                drop(upstream);
                let _ = pf.join().await;
            });
        }
    });
    Ok(local)
}
