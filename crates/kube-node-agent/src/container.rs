//! One container as a local process: how it is launched (the agent re-runs itself as
//! `launch` inside the pod's namespaces), its restart back-off, and its status as the API
//! shows it.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Container;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde_json::{Value, json};

use crate::agent::now;
use crate::launch::Bind;

/// Everything needed to start the container's program (again).
#[derive(Debug, Clone)]
pub struct LaunchSpec {
    /// `/run/netns/...`.
    pub netns: PathBuf,
    /// Volumes and the pod's resolv.conf and hosts.
    pub binds: Vec<Bind>,
    /// Environment.
    pub env: Vec<(String, String)>,
    /// Program and arguments.
    pub argv: Vec<String>,
    /// `workingDir`.
    pub workdir: Option<String>,
}

impl LaunchSpec {
    /// The `launch` command for `argv` (the container's program, or a probe's command).
    pub fn command(&self, self_exe: &std::path::Path, argv: &[String]) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(self_exe);
        cmd.arg("launch").arg("--netns").arg(&self.netns);
        for b in &self.binds {
            cmd.arg("--bind").arg(b.to_arg());
        }
        if let Some(w) = &self.workdir {
            cmd.arg("--workdir").arg(w);
        }
        cmd.arg("--").args(argv);
        cmd.env_clear().envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd.stdin(Stdio::null());
        cmd.process_group(0);
        cmd
    }
}

/// A container's lifecycle state.
pub struct ContainerState {
    /// The spec.
    pub spec: Container,
    /// How to start it, once the pod's config could be built.
    pub launch: Option<LaunchSpec>,
    /// The running process.
    pub child: Option<tokio::process::Child>,
    /// Its process id (the process-group id too).
    pub pid: Option<u32>,
    /// When it last started.
    pub started_at: Option<String>,
    /// When it last started, on the local clock (probe delays count from here).
    pub started: Option<Instant>,
    /// Restarts so far.
    pub restarts: i32,
    /// Why it is not running yet (reason, message).
    pub waiting: Option<(String, String)>,
    /// The last exit: (code, reason, startedAt, finishedAt).
    pub last_exit: Option<(i32, String, String, String)>,
    /// When to start it again after an exit.
    pub restart_at: Option<Instant>,
    /// Next back-off.
    pub backoff: Duration,
    /// Passes readiness.
    pub ready: bool,
    /// Probe counters: consecutive readiness successes/failures, liveness failures.
    pub ready_ok: u32,
    /// See `ready_ok`.
    pub ready_fail: u32,
    /// See `ready_ok`.
    pub live_fail: u32,
    /// Next readiness and liveness probe times.
    pub next_ready_probe: Option<Instant>,
    /// See `next_ready_probe`.
    pub next_live_probe: Option<Instant>,
    /// Exited and not to be restarted.
    pub done: bool,
}

impl ContainerState {
    /// A container not started yet.
    pub fn new(spec: Container) -> Self {
        Self {
            spec,
            launch: None,
            child: None,
            pid: None,
            started_at: None,
            started: None,
            restarts: 0,
            waiting: Some(("ContainerCreating".into(), String::new())),
            last_exit: None,
            restart_at: Some(Instant::now()),
            backoff: Duration::from_secs(1),
            ready: false,
            ready_ok: 0,
            ready_fail: 0,
            live_fail: 0,
            next_ready_probe: None,
            next_live_probe: None,
            done: false,
        }
    }

    /// Sends `sig` to the container's process group.
    pub fn signal(&self, sig: Signal) {
        if let (Some(pid), Some(_)) = (self.pid, &self.child)
            && let Ok(pid) = i32::try_from(pid)
        {
            let _ = killpg(Pid::from_raw(pid), sig);
        }
    }

    /// Records that the process ended with `code`.
    pub fn exited(&mut self, code: i32, reason: &str) {
        self.child = None;
        self.ready = false;
        self.ready_ok = 0;
        self.last_exit = Some((
            code,
            reason.into(),
            self.started_at.clone().unwrap_or_default(),
            now(),
        ));
    }

    /// The `containerStatuses` entry.
    pub fn status(&self) -> Value {
        let state = match (&self.child, &self.waiting, &self.last_exit) {
            (Some(_), _, _) => json!({"running": {"startedAt": self.started_at}}),
            (None, Some((reason, msg)), _) => {
                json!({"waiting": {"reason": reason, "message": msg}})
            }
            (None, None, Some((code, reason, started, finished)))
                if self.done || self.restart_at.is_none() =>
            {
                json!({"terminated": {"exitCode": code, "reason": reason, "startedAt": started, "finishedAt": finished}})
            }
            (None, None, Some(_)) => {
                json!({"waiting": {"reason": "CrashLoopBackOff", "message": "back-off restarting the container"}})
            }
            (None, None, None) => json!({"waiting": {"reason": "ContainerCreating"}}),
        };
        let mut s = json!({
            "name": self.spec.name,
            "image": self.spec.image.clone().unwrap_or_default(),
            "imageID": "",
            "ready": self.ready,
            "started": self.child.is_some(),
            "restartCount": self.restarts,
            "state": state,
        });
        if let Some(pid) = self.pid {
            s["containerID"] = json!(format!("process://{pid}"));
        }
        if self.child.is_some()
            && let Some((code, reason, started, finished)) = &self.last_exit
        {
            s["lastState"] = json!({"terminated": {"exitCode": code, "reason": reason, "startedAt": started, "finishedAt": finished}});
        }
        s
    }
}
