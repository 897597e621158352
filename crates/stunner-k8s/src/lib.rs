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
    let pod = choose(&pods.items).ok_or_else(|| Error::NotFound {
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

/// The pod to reach among those listed: a Running one, a Ready one before any other (a
/// replica that is starting or failing its probe is listed too), else in list order.
fn choose(pods: &[Pod]) -> Option<&Pod> {
    let ready = |p: &Pod| {
        p.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
    };
    let running = |p: &Pod| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
    let mut candidates = pods.iter().filter(|p| running(p));
    let first = candidates.clone().next();
    candidates.find(|p| ready(p)).or(first)
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

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodCondition, PodStatus};

    fn pod(name: &str, phase: &str, ready: bool) -> Pod {
        let mut p = Pod::default();
        p.metadata.name = Some(name.into());
        p.status = Some(PodStatus {
            phase: Some(phase.into()),
            conditions: Some(vec![PodCondition {
                type_: "Ready".into(),
                status: if ready { "True" } else { "False" }.into(),
                ..Default::default()
            }]),
            ..Default::default()
        });
        p
    }

    fn chosen(pods: &[Pod]) -> Option<&str> {
        choose(pods).and_then(|p| p.metadata.name.as_deref())
    }

    #[test]
    fn a_ready_replica_is_chosen_over_an_unready_one_listed_first() {
        let pods = [pod("a", "Running", false), pod("b", "Running", true)];
        assert_eq!(chosen(&pods), Some("b"));
    }

    #[test]
    fn an_unready_running_pod_is_better_than_none() {
        let pods = [pod("a", "Pending", true), pod("b", "Running", false)];
        assert_eq!(chosen(&pods), Some("b"));
    }

    #[test]
    fn pods_that_do_not_run_are_never_chosen() {
        let pods = [pod("a", "Pending", false), pod("b", "Succeeded", true)];
        assert_eq!(chosen(&pods), None);
        assert_eq!(chosen(&[]), None);
    }

    #[test]
    fn the_not_found_error_names_the_selector_and_namespace() {
        let e = Error::NotFound {
            selector: Target::Auth.selector(),
            namespace: Some("stunner-system".into()),
        };
        assert_eq!(
            e.to_string(),
            "no running pod with labels app=stunner-auth in namespace stunner-system"
        );
    }
}
