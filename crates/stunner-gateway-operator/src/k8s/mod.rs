//! The operator against a Kubernetes API: watchers fill the World, every change is
//! rendered (throttled), configs go to the CDS server on every replica, and the leader
//! writes the rest with server-side apply.

pub mod lease;
pub mod metrics;
pub mod throttle;
pub mod updater;
pub mod watch;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use stunner_cds::server::{ConfigStore, router};
use stunner_gateway::{Kind, RenderOptions, World, finalize, render};
use tokio::sync::{mpsc, watch as tokio_watch};

use self::lease::Lead;
use self::metrics::Metrics;
use self::updater::Updater;
use self::watch::Change;
use crate::Error;

/// Settings of the Kubernetes mode.
#[derive(Clone, Debug)]
pub struct RunConfig {
    /// Renderer settings.
    pub render: RenderOptions,
    /// CDS listen address.
    pub cds_listen: String,
    /// Serve CDS over TLS with this config.
    pub cds_tls: Option<Arc<stunner_cds::tls::ServerConfig>>,
    /// `/healthz` and `/readyz` listen address.
    pub health_listen: String,
    /// `/metrics` listen address (`0` disables).
    pub metrics_listen: String,
    /// Minimum interval between renders.
    pub throttle: Duration,
    /// Take part in leader election (else always write).
    pub leader_elect: bool,
    /// Namespace of the Lease.
    pub lease_namespace: String,
    /// Our identity in the Lease.
    pub identity: String,
    /// Invalidate statuses and delete dataplanes on shutdown.
    pub finalizer: bool,
    /// Where Service backends' addresses come from.
    pub endpoint_source: watch::EndpointSource,
}

async fn bind(addr: &str) -> Result<tokio::net::TcpListener, Error> {
    let a = if addr.starts_with(':') {
        format!("0.0.0.0{addr}")
    } else {
        addr.to_string()
    };
    tokio::net::TcpListener::bind(&a)
        .await
        .map_err(|e| Error::Listen {
            address: a.clone(),
            message: e.to_string(),
        })
}

fn serve(listener: tokio::net::TcpListener, app: Router) {
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(target: "operator", error = %e, "HTTP server stopped");
        }
    });
}

fn apply_change(world: &mut World, synced: &mut BTreeSet<Kind>, c: Change) {
    match c {
        Change::Apply(o) => world.insert(o),
        Change::Delete(o) => world.remove(&o),
        Change::Replace(kind, objects) => {
            world.replace(kind, objects);
            synced.insert(kind);
        }
    }
}

/// Applies World changes from `rx` and calls `render` once every kind has synced, at
/// most `throttle` after the first change it has not yet seen rendered (see
/// [`throttle::Throttle`]), until `stop` completes or the watchers end. Returns the World.
pub async fn event_loop(
    rx: &mut mpsc::Receiver<Change>,
    throttle: Duration,
    metrics: &Metrics,
    stop: impl std::future::Future<Output = ()>,
    mut render: impl FnMut(&World),
) -> World {
    let mut world = World::new();
    let mut synced = BTreeSet::new();
    let mut window = throttle::Throttle::new(throttle);
    tokio::pin!(stop);
    loop {
        let due = window.due().filter(|_| synced.len() == Kind::ALL.len());
        tokio::select! {
            c = rx.recv() => {
                let Some(c) = c else { break };
                apply_change(&mut world, &mut synced, c);
                metrics.reconcile_event();
                metrics.active(metrics::Loop::Operator);
                window.changed(tokio::time::Instant::now());
            }
            _ = tokio::time::sleep_until(due.unwrap_or_else(tokio::time::Instant::now)), if due.is_some() => {
                // Take whatever else arrived meanwhile, then render once.
                while let Ok(c) = rx.try_recv() {
                    apply_change(&mut world, &mut synced, c);
                }
                window.rendered();
                render(&world);
            }
            () = &mut stop => break,
        }
    }
    world
}

/// Runs until SIGTERM/SIGINT.
pub async fn run(client: Client, cfg: RunConfig) -> Result<(), Error> {
    let metrics = Metrics::default();
    let store = ConfigStore::new();
    let ready = Arc::new(AtomicBool::new(false));

    let cds = bind(&cfg.cds_listen).await?;
    let (app, tls) = (router(store.clone()), cfg.cds_tls.clone());
    tokio::spawn(async move {
        if let Err(e) = stunner_cds::tls::serve(cds, app, tls).await {
            tracing::error!(target: "operator", error = %e, "CDS server stopped");
        }
    });
    let health = bind(&cfg.health_listen).await?;
    let r = ready.clone();
    serve(
        health,
        Router::new()
            .route("/healthz", get(|| async { "ok" }))
            .route(
                "/readyz",
                get(move || {
                    let r = r.clone();
                    async move {
                        if r.load(Ordering::Relaxed) {
                            (axum::http::StatusCode::OK, "ok")
                        } else {
                            (axum::http::StatusCode::SERVICE_UNAVAILABLE, "not synced")
                        }
                    }
                }),
            ),
    );
    if cfg.metrics_listen != "0" {
        let m = metrics.clone();
        let l = bind(&cfg.metrics_listen).await?;
        serve(
            l,
            Router::new().route(
                "/metrics",
                get(move || {
                    let m = m.clone();
                    async move { m.text() }
                }),
            ),
        );
    }

    let (leader_tx, leader_rx) = tokio_watch::channel(if cfg.leader_elect {
        Lead::No
    } else {
        Lead::Always
    });
    if cfg.leader_elect {
        lease::Elector::new(
            client.clone(),
            &cfg.lease_namespace,
            lease::LEASE_NAME,
            &cfg.identity,
            lease::Timing::default(),
        )
        .spawn(leader_tx);
    }

    // The updater always works on the latest render: a watch channel holds one value,
    // so a slow API server makes the updater skip stale generations (a bounded queue).
    let (desired_tx, desired_rx) = tokio_watch::channel::<updater::Render>(None);
    let updater = Updater::new(client.clone(), metrics.clone()).with_lead(leader_rx.clone());
    let update_task = tokio::spawn(updater.run(desired_rx, leader_rx.clone()));

    // Without its CRDs the operator has nothing to watch: it stays unready, says which
    // are missing in one line (again only if that changes), and starts once they appear.
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| Error::Listen {
            address: "SIGTERM".into(),
            message: e.to_string(),
        })?;
    let mut reported = Vec::new();
    loop {
        let missing = watch::missing_crds(&client).await;
        if missing.is_empty() {
            if !reported.is_empty() {
                tracing::info!(target: "operator", "the CRDs are installed now, starting");
            }
            break;
        }
        if missing != reported {
            tracing::error!(target: "operator", "missing CRDs: {} (install them: kubectl apply -f deploy/crds/stunner-crds.yaml -f deploy/crds/gateway-api-crds.yaml)", missing.join(", "));
            reported = missing;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(3)) => {}
            _ = sigterm.recv() => return Ok(()),
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }

    let (tx, mut rx) = mpsc::channel(200);
    watch::start(client.clone(), tx, cfg.endpoint_source).await;
    let mut opts = cfg.render.clone();
    let stop = async move {
        tokio::select! {
            _ = sigterm.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    };
    let world = event_loop(&mut rx, cfg.throttle, &metrics, stop, |world| {
        opts.now = Time(Timestamp::now());
        // Drop the previous render before building the next, so that two are never held at
        // once (at full scale each is ~30 MB, docs/SCALING.md). Quietly: the updater has
        // nothing to do until the new one is sent, which wakes it.
        desired_tx.send_if_modified(|v| {
            *v = None;
            false
        });
        let t0 = std::time::Instant::now();
        let d = render(world, &opts);
        let generation = metrics.render(t0.elapsed());
        store.update_all(d.configs.clone());
        ready.store(true, Ordering::Relaxed);
        let live = Arc::new(updater::live_subset(&d, world));
        let _ = desired_tx.send(Some((generation, Arc::new(d), live)));
    })
    .await;
    tracing::info!(target: "operator", "shutting down");
    update_task.abort();
    if cfg.finalizer && leader_rx.borrow().writes(tokio::time::Instant::now()) {
        opts.now = Time(Timestamp::now());
        let d = finalize(&world, &opts);
        let w = Updater::new(client, metrics).apply(&d, &world).await;
        tracing::info!(target: "operator", ?w, "finalizer done");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::discovery::v1::EndpointSlice;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use stunner_gateway::Object;
    use tokio::time::Instant;

    use super::*;

    fn slice(generation: i64) -> Object {
        Object::EndpointSlice(EndpointSlice {
            metadata: ObjectMeta {
                namespace: Some("default".into()),
                name: Some("backend-abcde".into()),
                generation: Some(generation),
                ..ObjectMeta::default()
            },
            address_type: "IPv4".into(),
            ..EndpointSlice::default()
        })
    }

    /// An EndpointSlice update every 50 ms for 5 s: every change is rendered at most one
    /// window (250 ms) after it arrived. A debounce restarted by each event renders once,
    /// after the storm.
    #[tokio::test(start_paused = true)]
    async fn a_storm_of_changes_is_rendered_within_the_window() {
        let window = Duration::from_millis(250);
        let (tx, mut rx) = mpsc::channel(200);
        for k in Kind::ALL {
            tx.send(Change::Replace(k, Vec::new())).await.unwrap();
        }
        let t0 = Instant::now();
        let sent = Arc::new(std::sync::Mutex::new(Vec::<(i64, Instant)>::new()));
        let s = sent.clone();
        let storm = tokio::spawn(async move {
            for g in 1..=100 {
                tokio::time::sleep(Duration::from_millis(50)).await;
                s.lock().unwrap().push((g, Instant::now()));
                tx.send(Change::Apply(slice(g))).await.unwrap();
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        });
        let mut renders = Vec::new();
        let stop = async {
            let _ = storm.await;
        };
        event_loop(&mut rx, window, &Metrics::default(), stop, |w| {
            let g = w
                .endpoint_slices
                .values()
                .next()
                .and_then(|e| e.metadata.generation)
                .unwrap_or(0);
            renders.push((g, Instant::now()));
        })
        .await;
        assert!(renders.len() >= 18, "{} renders in 5 s", renders.len());
        // Each change is in the first render after it, no later than one window on.
        for (g, at) in sent.lock().unwrap().iter() {
            let (_, r) = renders.iter().find(|(rg, _)| rg >= g).unwrap();
            assert!(
                *r - *at <= window,
                "change {g} at {:?} rendered at {:?}",
                *at - t0,
                *r - t0
            );
        }
    }
}
