//! The updater: makes the cluster match a `Desired` with server-side apply under one
//! field manager, writing only the fields we render and nothing at all when the live
//! object already holds them. Status goes to the status subresource the same way.
//! Only the leader writes.

use gateway_api::apis::experimental::udproutes::UdpRoute;
use gateway_api::apis::standard::gatewayclasses::GatewayClass;
use gateway_api::apis::standard::gateways::Gateway;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::{Api, Client, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use stunner_gateway::crd::UDPRoute;
use stunner_gateway::{Desired, Key, World};

use futures_util::future::BoxFuture;
use futures_util::stream::{self, StreamExt};
use tokio::sync::watch;
use tokio::time::Instant;

use super::lease::{Lead, WRITE_TIMEOUT};
use super::metrics::Metrics;

/// The field manager of every write.
pub const FIELD_MANAGER: &str = "stunner-gateway-operator";

/// Whether `want` is contained in `have`: every field of `want` is present in `have`
/// with the same value (arrays element by element). The API server adds defaults and
/// other managers add fields; neither is a reason to write.
pub fn is_subset(want: &Value, have: &Value) -> bool {
    match (want, have) {
        (Value::Object(w), Value::Object(h)) => w.iter().all(|(k, v)| match h.get(k) {
            Some(hv) => is_subset(v, hv),
            None => v.is_null(),
        }),
        (Value::Array(w), Value::Array(h)) => {
            w.len() == h.len() && w.iter().zip(h).all(|(a, b)| is_subset(a, b))
        }
        (Value::Null, _) => true,
        (a, b) => a == b,
    }
}

/// What one pass wrote.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    /// Objects applied.
    pub applied: usize,
    /// Statuses applied.
    pub statuses: usize,
    /// Objects deleted.
    pub deleted: usize,
    /// Writes that failed (refused, or no answer within [`WRITE_TIMEOUT`]).
    pub errors: usize,
    /// Writes not started because we stopped being the leader.
    pub skipped: usize,
    /// Applies refused because another field manager owns a field we set to another
    /// value: reported, not forced, not retried until the desired object changes.
    pub conflicts: usize,
}

impl Written {
    /// Whether everything wanted was written.
    pub fn complete(&self) -> bool {
        self.errors == 0 && self.skipped == 0
    }

    fn add(&mut self, o: Outcome) {
        match o {
            Outcome::Unchanged => {}
            Outcome::Applied => self.applied += 1,
            Outcome::Status => self.statuses += 1,
            Outcome::Deleted => self.deleted += 1,
            Outcome::Failed => self.errors += 1,
            Outcome::Skipped => self.skipped += 1,
            Outcome::Conflict => self.conflicts += 1,
        }
    }
}

/// The result of one write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Unchanged,
    Applied,
    Status,
    Deleted,
    Failed,
    Skipped,
    Conflict,
}

/// Field managers whose fields we take over with a forced apply: upstream's operator
/// (controller-runtime names an Update's manager after the binary, `/manager`) and
/// kubectl's client-side-apply migration. Anyone else's field is theirs: a conflict is
/// reported and left alone, never fought over.
pub const TAKE_OVER: &[&str] = &["manager", "before-first-apply"];

/// The field managers a 409 apply conflict names (`conflict with "NAME" ...`).
pub fn conflicting_managers(s: &kube::core::Status) -> Vec<String> {
    let mut texts: Vec<&str> = vec![s.message.as_str()];
    if let Some(d) = &s.details {
        texts.extend(d.causes.iter().map(|c| c.message.as_str()));
    }
    let mut out = Vec::new();
    for t in texts {
        for part in t.split("conflict with \"").skip(1) {
            if let Some(name) = part.split('"').next()
                && !out.iter().any(|m| m == name)
            {
                out.push(name.to_string());
            }
        }
    }
    out
}

/// A write's result: done, refused by a conflict (the API's message), or failed.
type CallResult = Result<Option<String>, kube::Error>;

/// Writes in flight at once: enough to hide round trips with many Gateways, few enough
/// not to trip the API server's priority and fairness limits for one client.
pub const PARALLEL_WRITES: usize = 8;

/// Applies desired states.
pub struct Updater {
    client: Client,
    metrics: Metrics,
    lead: Option<watch::Receiver<Lead>>,
    /// Conflicts already logged, by object, with their message (logged once each).
    reported: std::sync::Mutex<std::collections::BTreeMap<String, String>>,
}

fn key_of<K: Resource>(o: &K) -> Key {
    (
        o.meta().namespace.clone().unwrap_or_default(),
        o.meta().name.clone().unwrap_or_default(),
    )
}

impl Updater {
    /// An updater writing through `client`, always.
    pub fn new(client: Client, metrics: Metrics) -> Self {
        Self {
            client,
            metrics,
            lead: None,
            reported: std::sync::Mutex::default(),
        }
    }

    /// Starts each write only while `lead` allows it at that moment, so a leader whose
    /// lease ran out mid-pass (or that was frozen and resumed) writes nothing more.
    pub fn with_lead(mut self, lead: watch::Receiver<Lead>) -> Self {
        self.lead = Some(lead);
        self
    }

    fn may_write(&self) -> bool {
        self.lead
            .as_ref()
            .is_none_or(|l| l.borrow().writes(Instant::now()))
    }

    /// Runs one API call under the lead check and [`WRITE_TIMEOUT`], and records it.
    async fn write<F>(&self, kind: &str, op: &str, name: &str, ok: Outcome, call: F) -> Outcome
    where
        F: std::future::Future<Output = CallResult>,
    {
        if !self.may_write() {
            return Outcome::Skipped;
        }
        let r = match tokio::time::timeout(WRITE_TIMEOUT, call).await {
            Ok(r) => r.map_err(|e| e.to_string()),
            Err(_) => Err(format!("no answer within {WRITE_TIMEOUT:?}")),
        };
        let object = format!("{kind} {name}");
        match r {
            Ok(None) => {
                self.metrics.resource_op(kind, op);
                if let Ok(mut m) = self.reported.lock() {
                    m.remove(&object);
                }
                ok
            }
            Ok(Some(conflict)) => {
                self.metrics.conflict(kind);
                let fresh = self.reported.lock().is_ok_and(|mut m| {
                    m.insert(object.clone(), conflict.clone()).as_ref() != Some(&conflict)
                });
                if fresh {
                    tracing::warn!(target: "operator", kind, object = name, error = %conflict,
                        "another field manager owns fields we render: left as it is (remove its fields, or let it own the object)");
                }
                Outcome::Conflict
            }
            Err(e) => {
                self.metrics.write_failed(kind, op);
                tracing::warn!(target: "operator", kind, op, object = name, error = %e, "write failed");
                Outcome::Failed
            }
        }
    }

    async fn apply_obj<K>(&self, obj: &K, live: Option<&K>) -> Outcome
    where
        K: Resource<DynamicType = ()> + Serialize + DeserializeOwned + Clone + std::fmt::Debug,
        K: Resource<Scope = kube::core::NamespaceResourceScope>,
    {
        let want = serde_json::to_value(obj).unwrap_or_default();
        if let Some(l) = live
            && is_subset(&want, &serde_json::to_value(l).unwrap_or_default())
        {
            return Outcome::Unchanged;
        }
        let (ns, name) = key_of(obj);
        let api: Api<K> = Api::namespaced(self.client.clone(), &ns);
        let call = async {
            let patch = Patch::Apply(&want);
            match api
                .patch(&name, &PatchParams::apply(FIELD_MANAGER), &patch)
                .await
            {
                Ok(_) => Ok(None),
                Err(kube::Error::Api(s)) if s.code == 409 => {
                    let managers = conflicting_managers(&s);
                    if managers.is_empty()
                        || !managers.iter().all(|m| TAKE_OVER.contains(&m.as_str()))
                    {
                        return Ok(Some(s.message.clone()));
                    }
                    let force = PatchParams::apply(FIELD_MANAGER).force();
                    api.patch(&name, &force, &patch).await.map(|_| None)
                }
                Err(e) => Err(e),
            }
        };
        self.write(
            &K::kind(&()),
            "apply",
            &format!("{ns}/{name}"),
            Outcome::Applied,
            call,
        )
        .await
    }

    async fn apply_status<K>(
        &self,
        api: Api<K>,
        name: &str,
        body: Value,
        live: Option<Value>,
    ) -> Outcome
    where
        K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
    {
        if let Some(l) = live
            && is_subset(&body["status"], &l)
            && is_subset(&l, &body["status"])
        {
            return Outcome::Unchanged;
        }
        let call = async {
            api.patch_status(
                name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&body),
            )
            .await
            .map(|_| None)
        };
        // Status conditions are ours alone: forced.
        self.write(&K::kind(&()), "status", name, Outcome::Status, call)
            .await
    }

    async fn status(&self, s: &stunner_gateway::StatusPatch, world: &World) -> Outcome {
        let t = &s.target;
        let key = (t.namespace.clone(), t.name.clone());
        let body = json!({"apiVersion": t.api_version, "kind": t.kind, "status": s.status});
        let c = self.client.clone();
        fn live<S: Serialize>(s: Option<&S>) -> Option<Value> {
            s.map(|s| serde_json::to_value(s).unwrap_or_default())
                .filter(|v| !v.is_null())
        }
        match (t.kind.as_str(), t.api_version.as_str()) {
            ("GatewayClass", _) => {
                let l = live(world.gateway_classes.get(&key).map(|o| &o.status));
                self.apply_status(Api::<GatewayClass>::all(c), &t.name, body, l)
                    .await
            }
            ("Gateway", _) => {
                let l = live(world.gateways.get(&key).map(|o| &o.status));
                let api = Api::<Gateway>::namespaced(c, &t.namespace);
                self.apply_status(api, &t.name, body, l).await
            }
            ("UDPRoute", v) if v.starts_with("stunner.l7mp.io") => {
                let l = live(world.udp_routes.get(&key).map(|o| &o.status));
                let api = Api::<UDPRoute>::namespaced(c, &t.namespace);
                self.apply_status(api, &t.name, body, l).await
            }
            ("UDPRoute", _) => {
                let l = live(world.udp_routes_v1a2.get(&key).map(|o| &o.status));
                let api = Api::<UdpRoute>::namespaced(c, &t.namespace);
                self.apply_status(api, &t.name, body, l).await
            }
            _ => Outcome::Unchanged,
        }
    }

    async fn delete(&self, d: &stunner_gateway::ObjectRef) -> Outcome {
        let c = self.client.clone();
        let dp = DeleteParams::background();
        let call = async {
            let r = match d.kind.as_str() {
                "Service" => Api::<Service>::namespaced(c, &d.namespace)
                    .delete(&d.name, &dp)
                    .await
                    .map(|_| ()),
                "Deployment" => Api::<Deployment>::namespaced(c, &d.namespace)
                    .delete(&d.name, &dp)
                    .await
                    .map(|_| ()),
                "ConfigMap" => Api::<ConfigMap>::namespaced(c, &d.namespace)
                    .delete(&d.name, &dp)
                    .await
                    .map(|_| ()),
                _ => Ok(()),
            };
            // Already gone is what we wanted.
            match r {
                Err(kube::Error::Api(e)) if e.code == 404 => Ok(None),
                other => other.map(|()| None),
            }
        };
        let name = format!("{}/{}", d.namespace, d.name);
        self.write(&d.kind, "delete", &name, Outcome::Deleted, call)
            .await
    }

    /// Writes what differs between `desired` and the live objects in `world`: objects
    /// first, then statuses, then deletions, each phase [`PARALLEL_WRITES`] at a time.
    pub async fn apply(&self, desired: &Desired, world: &World) -> Written {
        let mut w = Written::default();
        let mut objects: Vec<BoxFuture<'_, Outcome>> = Vec::new();
        for s in &desired.services {
            objects.push(Box::pin(self.apply_obj::<Service>(
                s,
                world.services.get(&key_of(s)).map(|o| &**o),
            )));
        }
        for d in &desired.deployments {
            objects.push(Box::pin(self.apply_obj::<Deployment>(
                d,
                world.deployments.get(&key_of(d)).map(|o| &**o),
            )));
        }
        for c in &desired.config_maps {
            objects.push(Box::pin(self.apply_obj::<ConfigMap>(
                c,
                world.config_maps.get(&key_of(c)).map(|o| &**o),
            )));
        }
        let statuses = desired
            .statuses
            .iter()
            .map(|s| Box::pin(self.status(s, world)) as BoxFuture<'_, Outcome>);
        let deletes = desired
            .deletes
            .iter()
            .map(|d| Box::pin(self.delete(d)) as BoxFuture<'_, Outcome>);
        for phase in [objects, statuses.collect(), deletes.collect()] {
            let outcomes: Vec<Outcome> = stream::iter(phase)
                .buffer_unordered(PARALLEL_WRITES)
                .collect()
                .await;
            outcomes.into_iter().for_each(|o| w.add(o));
        }
        self.metrics.update(w.errors == 0);
        self.metrics.unwritten(w.errors + w.skipped);
        w
    }
}

/// The live objects the updater compares `desired` with, and nothing else: cloning the
/// whole World for every render would copy every Node, Service and EndpointSlice of the
/// cluster; this copies what the render writes (a few objects per Gateway).
pub fn live_subset(desired: &Desired, world: &World) -> World {
    fn pick<T: Clone>(
        from: &std::collections::BTreeMap<Key, T>,
        keys: impl Iterator<Item = Key>,
    ) -> std::collections::BTreeMap<Key, T> {
        keys.filter_map(|k| from.get(&k).map(|o| (k, o.clone())))
            .collect()
    }
    let mut w = World::new();
    w.services = pick(&world.services, desired.services.iter().map(key_of));
    w.deployments = pick(&world.deployments, desired.deployments.iter().map(key_of));
    w.config_maps = pick(&world.config_maps, desired.config_maps.iter().map(key_of));
    let targets = |kind: &'static str| {
        desired
            .statuses
            .iter()
            .filter(move |s| s.target.kind == kind)
            .map(|s| (s.target.namespace.clone(), s.target.name.clone()))
    };
    w.gateway_classes = pick(&world.gateway_classes, targets("GatewayClass"));
    w.gateways = pick(&world.gateways, targets("Gateway"));
    w.udp_routes = pick(&world.udp_routes, targets("UDPRoute"));
    w.udp_routes_v1a2 = pick(&world.udp_routes_v1a2, targets("UDPRoute"));
    w
}

/// One render for the updater: its generation, what to write, and the live objects it
/// saw. Shared, so taking the latest out of the channel copies no objects.
pub type Render = Option<(u64, std::sync::Arc<Desired>, std::sync::Arc<World>)>;

/// Exponential backoff of retries after an incomplete pass.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    first: std::time::Duration,
    max: std::time::Duration,
    next: std::time::Duration,
}

impl Backoff {
    /// Starts at `first`, doubles up to `max`.
    pub fn new(first: std::time::Duration, max: std::time::Duration) -> Self {
        Self {
            first,
            max,
            next: first,
        }
    }

    /// The delay before the next retry; the one after is twice as long.
    pub fn next_delay(&mut self) -> std::time::Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        d
    }

    /// Back to the first delay.
    pub fn reset(&mut self) {
        self.next = self.first;
    }
}

impl Updater {
    /// The update loop: writes each new render while we lead, and when we become the
    /// leader; a pass that left writes undone is retried with backoff (0.5 s doubling to
    /// 30 s) until it completes or a newer render replaces it (which resets the backoff).
    pub async fn run(self, mut desired: watch::Receiver<Render>, mut lead: watch::Receiver<Lead>) {
        let mut backoff = Backoff::new(
            std::time::Duration::from_millis(500),
            std::time::Duration::from_secs(30),
        );
        let mut retry_at: Option<Instant> = None;
        // The generation last written completely, and whether we could write then.
        let mut done: Option<u64> = None;
        let mut writing = false;
        loop {
            let retry = retry_at;
            tokio::select! {
                r = desired.changed() => {
                    if r.is_err() { return }
                    backoff.reset();
                    retry_at = None;
                }
                r = lead.changed() => if r.is_err() { return },
                () = tokio::time::sleep_until(retry.unwrap_or_else(Instant::now)), if retry.is_some() => {
                    retry_at = None;
                    done = None;
                }
            }
            let may = lead.borrow_and_update().writes(Instant::now());
            let became = may && !writing;
            writing = may;
            if !may {
                continue;
            }
            let latest = desired.borrow_and_update().clone();
            let Some((generation, d, world)) = latest else {
                continue;
            };
            if done == Some(generation) && !became {
                continue;
            }
            let t0 = std::time::Instant::now();
            let w = self.apply(&d, &world).await;
            self.metrics.update_time(t0.elapsed());
            tracing::debug!(target: "operator", generation, ?w, "update pass");
            if w.complete() {
                done = Some(generation);
                backoff.reset();
                self.metrics.acked(generation);
            } else {
                let delay = backoff.next_delay();
                tracing::info!(target: "operator", generation, errors = w.errors, skipped = w.skipped, retry_in = ?delay, "update pass incomplete");
                retry_at = Some(Instant::now() + delay);
                done = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subset_ignores_added_fields_and_defaults() {
        let want =
            json!({"spec": {"type": "LoadBalancer", "ports": [{"port": 3478, "protocol": "UDP"}]}});
        let have = json!({"spec": {"type": "LoadBalancer", "clusterIP": "10.0.0.1",
            "ports": [{"port": 3478, "protocol": "UDP", "nodePort": 31000, "targetPort": 3478}]}});
        assert!(is_subset(&want, &have));
        let changed = json!({"spec": {"type": "NodePort"}});
        assert!(!is_subset(&changed, &have));
        let more_ports = json!({"spec": {"ports": [{"port": 3478}, {"port": 3479}]}});
        assert!(!is_subset(&more_ports, &have));
        assert!(!is_subset(
            &json!({"metadata": {"labels": {"a": "b"}}}),
            &json!({"metadata": {}})
        ));
    }
}
