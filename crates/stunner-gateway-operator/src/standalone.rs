//! Standalone mode: no cluster. Manifest files are watched (polled), re-rendered on
//! change, and the configs served over CDS, so stunnerd and the auth service run from
//! the same Gateway manifests on one machine or in docker-compose.

use std::path::PathBuf;
use std::time::Duration;

use stunner_cds::server::{ConfigStore, router};
use stunner_gateway::{Desired, Object, RenderOptions, World, render};

use crate::{Error, manifests};

/// Loads and renders the manifests once.
pub fn render_files(paths: &[PathBuf], opts: &RenderOptions) -> Result<Desired, Error> {
    let texts = manifests::read_all(paths)?;
    let world = manifests::world(&texts)?;
    Ok(render(&world, opts))
}

/// Standalone mode runs no Deployments, so a Dataplane is optional there: the ones the
/// GatewayConfigs name are supplied with defaults when the files lack them.
fn with_default_dataplanes(mut world: World) -> World {
    let wanted: Vec<String> = world
        .gateway_configs
        .values()
        .map(|c| {
            c.spec
                .dataplane
                .clone()
                .unwrap_or_else(|| stunner_gateway::names::DEFAULT_DATAPLANE.into())
        })
        .collect();
    for name in wanted {
        let key = (String::new(), name.clone());
        if !world.dataplanes.contains_key(&key) {
            let dp = stunner_gateway::crd::Dataplane::new(&name, Default::default());
            world.insert(Object::Dataplane(dp));
        }
    }
    world
}

fn now() -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Time {
    k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now())
}

/// Logs what users need to know about a render: Gateways that are not programmed and
/// routes that are not accepted, with the reason.
fn report(d: &Desired) {
    use serde_json::Value;
    let conds = |v: &Value| {
        v.get("conditions")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    for s in &d.statuses {
        let mut all = conds(&s.status);
        for p in s
            .status
            .get("parents")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            all.extend(conds(p));
        }
        let field = |c: &Value, k: &str| c.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        for c in all.iter().filter(|c| field(c, "status") == "False") {
            tracing::warn!(
                target: "operator",
                kind = %s.target.kind,
                object = %format!("{}/{}", s.target.namespace, s.target.name),
                condition = %field(c, "type"),
                reason = %field(c, "reason"),
                "{}",
                field(c, "message")
            );
        }
    }
}

/// Serves CDS on `listener` (over TLS with `tls`) and re-renders `paths` every `poll` when they change. The
/// first load must succeed; later errors are logged and the last good configs stay.
pub async fn run(
    paths: Vec<PathBuf>,
    mut opts: RenderOptions,
    listener: tokio::net::TcpListener,
    tls: Option<std::sync::Arc<stunner_cds::tls::ServerConfig>>,
    poll: Duration,
) -> Result<(), Error> {
    let store = ConfigStore::new();
    let mut last = manifests::read_all(&paths)?;
    opts.now = now();
    let world = with_default_dataplanes(manifests::world(&last)?);
    let d = render(&world, &opts);
    report(&d);
    tracing::info!(target: "operator", configs = d.configs.len(), "rendered");
    store.update_all(d.configs);
    let app = router(store.clone());
    let server = tokio::spawn(stunner_cds::tls::serve(listener, app, tls));
    let mut tick = tokio::time::interval(poll);
    loop {
        tick.tick().await;
        if server.is_finished() {
            return Err(Error::Listen {
                address: "cds".into(),
                message: "server stopped".into(),
            });
        }
        let texts = match manifests::read_all(&paths) {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(target: "operator", "{e}; keeping the running configs");
                continue;
            }
        };
        if texts == last {
            continue;
        }
        last = texts;
        let world = match manifests::world(&last) {
            Ok(w) => with_default_dataplanes(w),
            Err(e) => {
                tracing::error!(target: "operator", "{e}; keeping the running configs");
                continue;
            }
        };
        opts.now = now();
        let d = render(&world, &opts);
        report(&d);
        tracing::info!(target: "operator", configs = d.configs.len(), "manifests changed, re-rendered");
        store.update_all(d.configs);
    }
}
