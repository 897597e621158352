//! A pod's life on this node, as the kubelet runs it: network and volumes first (retried
//! while a ConfigMap or Secret is missing), then each container as a process, probes,
//! restarts with back-off, status writes, and deletion (SIGTERM, up to the grace period,
//! SIGKILL, then the final delete).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use nix::sys::signal::Signal;
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::agent::{Agent, PodEntry, now};
use crate::container::{ContainerState, LaunchSpec};
use crate::env::{self, EnvContext};
use crate::launch::Bind;
use crate::netns::{PodNet, netns_path};
use crate::probe;
use crate::volume::{self, Content};

/// Starts the task of a pod that has just been bound to this node (once per UID).
pub fn start(agent: &Arc<Agent>, pod: Pod) {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let Ok(mut pods) = agent.pods.lock() else {
        return;
    };
    if pods.contains_key(&uid) {
        return;
    }
    let dir = agent.state.join("pods").join(format!("{ns}_{name}_{uid}"));
    let (tx, rx) = watch::channel(None);
    pods.insert(
        uid.clone(),
        PodEntry {
            namespace: ns,
            name,
            ip: None,
            dir: dir.clone(),
            stop: tx,
            launch: Default::default(),
        },
    );
    drop(pods);
    let agent = agent.clone();
    tokio::spawn(async move {
        let key = format!(
            "{}/{}",
            pod.metadata.namespace.as_deref().unwrap_or(""),
            pod.metadata.name.as_deref().unwrap_or("")
        );
        tracing::info!(pod = %key, "starting");
        run(&agent, pod, dir, rx).await;
        if let Ok(mut pods) = agent.pods.lock() {
            pods.remove(&uid);
        }
        tracing::info!(pod = %key, "gone");
    });
}

/// Asks pod `uid` to stop within `grace` seconds.
pub fn stop(agent: &Agent, uid: &str, grace: i64) {
    if let Ok(pods) = agent.pods.lock()
        && let Some(p) = pods.get(uid)
    {
        let cur = *p.stop.borrow();
        if cur.is_none_or(|g| grace < g) {
            let _ = p.stop.send(Some(grace));
        }
    }
}

struct PodRun<'a> {
    agent: &'a Arc<Agent>,
    pod: Pod,
    dir: PathBuf,
    net: Option<PodNet>,
    ip: IpAddr,
    containers: Vec<ContainerState>,
    start_time: String,
    last_status: Option<Value>,
    cond_times: BTreeMap<&'static str, (bool, String)>,
    configured: bool,
    terminating: bool,
    token_volumes: bool,
    last_sync: Instant,
}

async fn run(agent: &Arc<Agent>, pod: Pod, dir: PathBuf, mut stop: watch::Receiver<Option<i64>>) {
    let spec = pod.spec.clone().unwrap_or_default();
    let host_network = spec.host_network == Some(true);
    let key = format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or(""),
        pod.metadata.name.as_deref().unwrap_or("")
    );
    let (net, ip) = if host_network {
        (None, IpAddr::V4(agent.net.gateway()))
    } else {
        match agent.net.create().await {
            Ok(n) => {
                let ip = IpAddr::V4(n.ip);
                (Some(n), ip)
            }
            Err(e) => {
                tracing::error!(pod = %key, error = %e, "pod network");
                return;
            }
        }
    };
    if let Ok(mut pods) = agent.pods.lock()
        && let Some(p) = pods.get_mut(pod.metadata.uid.as_deref().unwrap_or(""))
    {
        p.ip = Some(ip);
    }
    let _ = std::fs::create_dir_all(dir.join("logs"));
    let mut r = PodRun {
        agent,
        containers: spec
            .containers
            .iter()
            .cloned()
            .map(ContainerState::new)
            .collect(),
        pod,
        dir,
        net,
        ip,
        start_time: now(),
        last_status: None,
        cond_times: BTreeMap::new(),
        configured: false,
        terminating: false,
        token_volumes: false,
        last_sync: Instant::now(),
    };
    let mut grace: Option<i64> = None;
    let mut tick = tokio::time::interval(Duration::from_millis(300));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            changed = stop.changed() => {
                if changed.is_err() { grace = Some(0); } else { grace = *stop.borrow(); }
            }
        }
        if let Some(g) = grace {
            r.terminate(g, &mut stop).await;
            break;
        }
        r.step().await;
        r.write_status().await;
    }
    r.cleanup().await;
}

impl PodRun<'_> {
    fn key(&self) -> String {
        format!(
            "{}/{}",
            self.pod.metadata.namespace.as_deref().unwrap_or(""),
            self.pod.metadata.name.as_deref().unwrap_or("")
        )
    }

    fn ctx(&self) -> EnvContext<'_> {
        EnvContext {
            pod: &self.pod,
            pod_ip: self.ip.to_string(),
            host_ip: self.agent.net.gateway().to_string(),
            lookup: &self.agent.lookup,
            api_service: self.agent.api_service.clone(),
        }
    }

    fn netns(&self) -> PathBuf {
        match &self.net {
            Some(n) => netns_path(&n.netns),
            None => netns_path(&self.agent.hub_netns),
        }
    }

    /// Builds volumes, files and each container's launch spec; `Err` is shown as the
    /// containers' waiting reason and retried.
    async fn configure(&mut self) -> Result<(), String> {
        let spec = self.pod.spec.clone().unwrap_or_default();
        let ns = self.pod.metadata.namespace.clone().unwrap_or_default();
        let mut vol_dirs: BTreeMap<String, PathBuf> = BTreeMap::new();
        for v in spec.volumes.iter().flatten() {
            let content = volume::content(&self.ctx(), &self.agent.lookup, v).await?;
            let d = volume::dir(&self.dir, &v.name);
            match content {
                Content::Files(files) => {
                    volume::write_atomic(&d, &files)
                        .map_err(|e| format!("volume {}: {e}", v.name))?;
                }
                Content::Scratch => {
                    std::fs::create_dir_all(&d).map_err(|e| format!("volume {}: {e}", v.name))?
                }
                Content::Host(p) => {
                    vol_dirs.insert(v.name.clone(), p);
                    continue;
                }
            }
            if v.projected.as_ref().is_some_and(|p| {
                p.sources
                    .iter()
                    .flatten()
                    .any(|s| s.service_account_token.is_some())
            }) {
                self.token_volumes = true;
            }
            vol_dirs.insert(v.name.clone(), d);
        }
        let resolv = self.dir.join("resolv.conf");
        let hosts = self.dir.join("hosts");
        std::fs::write(
            &resolv,
            volume::resolv_conf(&ns, &self.agent.dns_ip, &self.agent.domain),
        )
        .map_err(|e| format!("resolv.conf: {e}"))?;
        std::fs::write(&hosts, volume::hosts(&self.pod, &self.ip.to_string()))
            .map_err(|e| format!("hosts: {e}"))?;
        for i in 0..self.containers.len() {
            let c = self.containers[i].spec.clone();
            let env = env::build(&self.ctx(), &c).await?;
            let command: Vec<String> = c
                .command
                .iter()
                .flatten()
                .map(|s| env::expand(s, &env))
                .collect();
            let args: Vec<String> = c
                .args
                .iter()
                .flatten()
                .map(|s| env::expand(s, &env))
                .collect();
            let argv =
                self.agent
                    .images
                    .resolve(c.image.as_deref().unwrap_or(""), &command, &args)?;
            let mut binds = vec![
                Bind {
                    source: resolv.clone(),
                    target: "/etc/resolv.conf".into(),
                    read_only: true,
                },
                Bind {
                    source: hosts.clone(),
                    target: "/etc/hosts".into(),
                    read_only: true,
                },
            ];
            for m in c.volume_mounts.iter().flatten() {
                let Some(src) = vol_dirs.get(&m.name) else {
                    return Err(format!(
                        "container {}: volumeMount {:?} names no volume",
                        c.name, m.name
                    ));
                };
                let src = match m.sub_path.as_deref().filter(|s| !s.is_empty()) {
                    Some(sub) => src.join(sub),
                    None => src.clone(),
                };
                let target = PathBuf::from(&m.mount_path);
                self.agent
                    .ensure_mountpoint(&target, src.is_file())
                    .map_err(|e| format!("mount point {}: {e}", target.display()))?;
                binds.push(Bind {
                    source: src,
                    target,
                    read_only: m.read_only == Some(true),
                });
            }
            self.containers[i].launch = Some(LaunchSpec {
                netns: self.netns(),
                binds,
                env,
                argv,
                workdir: c.working_dir.clone(),
            });
        }
        Ok(())
    }

    async fn step(&mut self) {
        if !self.configured {
            match self.configure().await {
                Ok(()) => {
                    self.configured = true;
                    self.publish_launch();
                    for c in &mut self.containers {
                        c.waiting = None;
                    }
                }
                Err(e) => {
                    for c in &mut self.containers {
                        c.waiting = Some(("CreateContainerConfigError".into(), e.clone()));
                    }
                    tracing::warn!(pod = %self.key(), error = %e, "cannot start yet");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    return;
                }
            }
        } else if self.last_sync.elapsed() > Duration::from_secs(3) {
            self.last_sync = Instant::now();
            self.sync_volumes().await;
        }
        let policy = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.restart_policy.clone())
            .unwrap_or_else(|| "Always".into());
        let now_i = Instant::now();
        for i in 0..self.containers.len() {
            self.reap(i, &policy);
            let c = &self.containers[i];
            if c.child.is_none() && !c.done && c.restart_at.is_some_and(|t| t <= now_i) {
                self.spawn(i);
            }
        }
        self.probe().await;
    }

    /// Tells the kubelet API how each container is started (for `exec`).
    fn publish_launch(&self) {
        let uid = self.pod.metadata.uid.as_deref().unwrap_or("");
        let specs = self
            .containers
            .iter()
            .filter_map(|c| Some((c.spec.name.clone(), c.launch.clone()?)))
            .collect();
        if let Ok(mut pods) = self.agent.pods.lock()
            && let Some(p) = pods.get_mut(uid)
        {
            p.launch = specs;
        }
    }

    /// ConfigMap and Secret volumes follow their objects (token volumes are written once).
    async fn sync_volumes(&mut self) {
        let spec = self.pod.spec.clone().unwrap_or_default();
        for v in spec.volumes.iter().flatten() {
            if v.config_map.is_none()
                && v.secret.is_none()
                && (v.projected.is_none() || self.token_volumes)
            {
                continue;
            }
            if let Ok(Content::Files(files)) =
                volume::content(&self.ctx(), &self.agent.lookup, v).await
            {
                let _ = volume::write_atomic(&volume::dir(&self.dir, &v.name), &files);
            }
        }
    }

    fn reap(&mut self, i: usize, policy: &str) {
        let c = &mut self.containers[i];
        let Some(child) = c.child.as_mut() else {
            return;
        };
        let Ok(Some(status)) = child.try_wait() else {
            return;
        };
        use std::os::unix::process::ExitStatusExt;
        let code = status
            .code()
            .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
        let reason = if code == 0 { "Completed" } else { "Error" };
        tracing::info!(pod = %format!("{}/{}", self.pod.metadata.namespace.as_deref().unwrap_or(""), self.pod.metadata.name.as_deref().unwrap_or("")), container = %c.spec.name, code, "container exited");
        c.exited(code, reason);
        let restart =
            !self.terminating && (policy == "Always" || (policy == "OnFailure" && code != 0));
        if restart {
            c.restart_at = Some(Instant::now() + c.backoff);
            c.backoff = (c.backoff * 2).min(Duration::from_secs(30));
        } else {
            c.restart_at = None;
            c.done = true;
        }
    }

    fn spawn(&mut self, i: usize) {
        let log = self
            .dir
            .join("logs")
            .join(format!("{}.log", self.containers[i].spec.name));
        let c = &mut self.containers[i];
        let Some(spec) = c.launch.clone() else { return };
        let mut cmd = spec.command(&self.agent.self_exe, &spec.argv);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log);
        match file.and_then(|f| Ok((f.try_clone()?, f))) {
            Ok((a, b)) => {
                cmd.stdout(a).stderr(b);
            }
            Err(e) => {
                c.waiting = Some(("RunContainerError".into(), format!("log file: {e}")));
                return;
            }
        }
        match cmd.spawn() {
            Ok(child) => {
                if c.started_at.is_some() {
                    c.restarts += 1;
                }
                c.pid = child.id();
                c.child = Some(child);
                c.started_at = Some(now());
                c.started = Some(Instant::now());
                c.waiting = None;
                c.restart_at = None;
                c.live_fail = 0;
                c.ready_fail = 0;
                c.ready_ok = 0;
                let delay = |p: &Option<k8s_openapi::api::core::v1::Probe>| {
                    p.as_ref()
                        .map(|p| Instant::now() + probe::Timing::of(p).initial_delay)
                };
                c.next_ready_probe = delay(&c.spec.readiness_probe);
                c.next_live_probe = delay(&c.spec.liveness_probe);
                c.ready = c.spec.readiness_probe.is_none();
            }
            Err(e) => {
                c.waiting = Some(("RunContainerError".into(), e.to_string()));
                c.restart_at = Some(Instant::now() + c.backoff);
            }
        }
    }

    async fn probe(&mut self) {
        let now_i = Instant::now();
        for i in 0..self.containers.len() {
            if self.containers[i].child.is_none() {
                continue;
            }
            let spec = self.containers[i].spec.clone();
            let launch = self.containers[i].launch.clone();
            let exe = self.agent.self_exe.clone();
            let exec = move |argv: Vec<String>| -> futures_util::future::BoxFuture<'static, bool> {
                let launch = launch.clone();
                let exe = exe.clone();
                Box::pin(async move {
                    let Some(l) = launch else { return false };
                    let mut cmd = l.command(&exe, &argv);
                    cmd.stdout(std::process::Stdio::null())
                        .stderr(std::process::Stdio::null());
                    cmd.kill_on_drop(true);
                    matches!(cmd.status().await, Ok(s) if s.success())
                })
            };
            if let Some(p) = &spec.readiness_probe
                && self.containers[i]
                    .next_ready_probe
                    .is_some_and(|t| t <= now_i)
            {
                let t = probe::Timing::of(p);
                let ok = probe::run(&self.agent.hub, self.ip, &spec, p, &exec).await;
                let c = &mut self.containers[i];
                c.next_ready_probe = Some(now_i + t.period);
                if ok {
                    c.ready_fail = 0;
                    c.ready_ok += 1;
                    if c.ready_ok >= t.success {
                        c.ready = true;
                    }
                } else {
                    c.ready_ok = 0;
                    c.ready_fail += 1;
                    if c.ready_fail >= t.failure {
                        c.ready = false;
                    }
                }
            }
            if let Some(p) = &spec.liveness_probe
                && !self.terminating
                && self.containers[i]
                    .next_live_probe
                    .is_some_and(|t| t <= now_i)
            {
                let t = probe::Timing::of(p);
                let ok = probe::run(&self.agent.hub, self.ip, &spec, p, &exec).await;
                let key = self.key();
                let c = &mut self.containers[i];
                c.next_live_probe = Some(now_i + t.period);
                c.live_fail = if ok { 0 } else { c.live_fail + 1 };
                if c.live_fail >= t.failure {
                    tracing::warn!(pod = %key, container = %spec.name, "liveness probe failed, restarting");
                    c.signal(Signal::SIGKILL);
                    c.live_fail = 0;
                }
            }
        }
    }

    fn condition(&mut self, kind: &'static str, on: bool) -> Value {
        let t = match self.cond_times.get(kind) {
            Some((was, t)) if *was == on => t.clone(),
            _ => {
                let t = now();
                self.cond_times.insert(kind, (on, t.clone()));
                t
            }
        };
        json!({"type": kind, "status": if on { "True" } else { "False" }, "lastTransitionTime": t})
    }

    fn status(&mut self) -> Value {
        let all_ready = !self.terminating && self.containers.iter().all(|c| c.ready);
        let any_running = self.containers.iter().any(|c| c.child.is_some());
        let all_done = self.containers.iter().all(|c| c.done);
        let phase = if all_done {
            if self
                .containers
                .iter()
                .all(|c| c.last_exit.as_ref().is_some_and(|e| e.0 == 0))
            {
                "Succeeded"
            } else {
                "Failed"
            }
        } else if any_running || self.containers.iter().any(|c| c.started_at.is_some()) {
            "Running"
        } else {
            "Pending"
        };
        let host = self.agent.net.gateway().to_string();
        let conditions = vec![
            self.condition("PodScheduled", true),
            self.condition("Initialized", true),
            self.condition("ContainersReady", all_ready),
            self.condition("Ready", all_ready),
        ];
        json!({
            "phase": phase,
            "hostIP": host,
            "hostIPs": [{"ip": host}],
            "podIP": self.ip.to_string(),
            "podIPs": [{"ip": self.ip.to_string()}],
            "startTime": self.start_time,
            "conditions": conditions,
            "containerStatuses": self.containers.iter().map(ContainerState::status).collect::<Vec<_>>(),
        })
    }

    async fn write_status(&mut self) {
        let status = self.status();
        // Transition times alone do not make a write.
        if self.last_status.as_ref() == Some(&status) {
            return;
        }
        let api: Api<Pod> = Api::namespaced(
            self.agent.client.clone(),
            self.pod.metadata.namespace.as_deref().unwrap_or(""),
        );
        let name = self.pod.metadata.name.clone().unwrap_or_default();
        match api
            .patch_status(
                &name,
                &PatchParams::default(),
                &Patch::Merge(json!({"status": status})),
            )
            .await
        {
            Ok(_) => self.last_status = Some(status),
            Err(e) => tracing::debug!(pod = %self.key(), error = %e, "status write"),
        }
    }

    /// SIGTERM, wait up to `grace` seconds (new `stop` values may shorten it), SIGKILL,
    /// then remove the pod object as the kubelet's final delete does.
    async fn terminate(&mut self, grace: i64, stop: &mut watch::Receiver<Option<i64>>) {
        tracing::info!(pod = %self.key(), grace, "terminating");
        self.terminating = true;
        for c in &self.containers {
            c.signal(Signal::SIGTERM);
        }
        let mut deadline = Instant::now() + Duration::from_secs(grace.max(0) as u64);
        loop {
            for i in 0..self.containers.len() {
                self.reap(i, "Never");
            }
            self.probe().await;
            self.write_status().await;
            if self.containers.iter().all(|c| c.child.is_none()) || Instant::now() >= deadline {
                break;
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                changed = stop.changed() => {
                    let g = if changed.is_err() { Some(0) } else { *stop.borrow() };
                    if let Some(g) = g {
                        deadline = deadline.min(Instant::now() + Duration::from_secs(g.max(0) as u64));
                    }
                }
            }
        }
        for c in &mut self.containers {
            c.signal(Signal::SIGKILL);
            if let Some(child) = c.child.as_mut() {
                let _ = child.wait().await;
                c.exited(137, "Error");
            }
        }
        self.write_status().await;
        let api: Api<Pod> = Api::namespaced(
            self.agent.client.clone(),
            self.pod.metadata.namespace.as_deref().unwrap_or(""),
        );
        let dp = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: self.pod.metadata.uid.clone(),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        let name = self.pod.metadata.name.clone().unwrap_or_default();
        if let Err(e) = api.delete(&name, &dp).await {
            tracing::debug!(pod = %self.key(), error = %e, "final delete");
        }
    }

    async fn cleanup(&mut self) {
        if let Some(n) = self.net.take() {
            self.agent.net.delete(&n).await;
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
