//! The kubelet's exec endpoint, `/exec/{ns}/{pod}/{container}?command=…`, over SPDY: the
//! API server translates `kubectl exec`'s WebSocket (`v5.channel.k8s.io`) into the SPDY
//! remote-command protocol (`v4.channel.k8s.io` and older) towards the kubelet.
//!
//! The client opens one stream per channel (`streamType` error, stdin, stdout, stderr,
//! resize); once all that the query asked for are there, the command runs the way the
//! container's program does (its network namespace, volumes and environment, through
//! `kube-node-agent launch`). At the end stdout and stderr close and the error stream
//! carries the result: in v4 a `metav1.Status` (`Success`, or `Failure` with reason
//! `NonZeroExitCode` and the code as an `ExitCode` cause), in older versions a message.
//! There is no terminal: with `tty=1` stderr joins stdout and resize events are ignored.

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::agent::Agent;
use crate::container::LaunchSpec;
use crate::spdy::{self, header};
use crate::spdy_session::{self, Out, Stream};

/// Sub-protocols we speak, best first.
const PROTOCOLS: &[&str] = &[
    "v4.channel.k8s.io",
    "v3.channel.k8s.io",
    "v2.channel.k8s.io",
    "channel.k8s.io",
];
/// How long the client may take to open its streams (the kubelet's default).
const STREAM_WAIT: Duration = Duration::from_secs(30);
/// Read size from the command's output.
const CHUNK: usize = 32 * 1024;

/// What the client asked to connect.
#[derive(Debug, Clone, Copy)]
struct Want {
    stdin: bool,
    stdout: bool,
    stderr: bool,
    tty: bool,
}

/// `/exec/{ns}/{pod}/{uid}/{container}`: as without the UID.
pub async fn with_uid(
    state: State<Arc<Agent>>,
    Path((ns, pod, _uid, container)): Path<(String, String, String, String)>,
    q: Query<Vec<(String, String)>>,
    req: Request,
) -> Response {
    handle(state, Path((ns, pod, container)), q, req).await
}

/// `/exec/{ns}/{pod}/{container}`.
pub async fn handle(
    State(agent): State<Arc<Agent>>,
    Path((ns, pod, container)): Path<(String, String, String)>,
    Query(q): Query<Vec<(String, String)>>,
    mut req: Request,
) -> Response {
    let Some(launch) = agent.launch(&ns, &pod, &container) else {
        return (
            StatusCode::NOT_FOUND,
            format!("container {container:?} of pod {ns}/{pod} does not run here\n"),
        )
            .into_response();
    };
    let argv: Vec<String> = q
        .iter()
        .filter(|(k, _)| k == "command")
        .map(|(_, v)| v.clone())
        .collect();
    if argv.is_empty() {
        return (StatusCode::BAD_REQUEST, "no command given\n").into_response();
    }
    let flag = |name: &str| {
        q.iter()
            .any(|(k, v)| k == name && matches!(v.as_str(), "1" | "true"))
    };
    let want = Want {
        stdin: flag("input") || flag("stdin"),
        stdout: flag("output") || flag("stdout"),
        stderr: flag("error") || flag("stderr"),
        tty: flag("tty"),
    };
    if !spdy_session::wants_spdy(req.headers()) {
        return (
            StatusCode::BAD_REQUEST,
            "exec is served over SPDY only (Upgrade: SPDY/3.1)\n",
        )
            .into_response();
    }
    let Some(proto) = spdy_session::negotiate(req.headers(), PROTOCOLS) else {
        return (
            StatusCode::FORBIDDEN,
            format!(
                "no common stream protocol: we speak {}\n",
                PROTOCOLS.join(", ")
            ),
        )
            .into_response();
    };
    let upgrade = hyper::upgrade::on(&mut req);
    let exe = agent.self_exe.clone();
    tokio::spawn(async move {
        let up = match upgrade.await {
            Ok(up) => hyper_util::rt::TokioIo::new(up),
            Err(e) => {
                tracing::warn!(error = %e, "exec upgrade");
                return;
            }
        };
        let (tx, rx) = mpsc::channel::<(String, Stream, Out)>(8);
        tokio::spawn(run(exe, launch, argv, want, proto, rx));
        spdy_session::run(up, move |s, out| {
            let kind = header(&s.headers, "streamtype").unwrap_or("").to_string();
            if let Err(mpsc::error::TrySendError::Full((_, s, out))) =
                tx.try_send((kind, s, out.clone()))
            {
                tokio::spawn(async move { out.reset(s.id, spdy::status::PROTOCOL_ERROR).await });
            }
        })
        .await;
    });
    spdy_session::switching(proto)
}

/// The streams of one exec, as they arrive.
#[derive(Default)]
struct Streams {
    error: Option<u32>,
    stdin: Option<Stream>,
    stdout: Option<u32>,
    stderr: Option<u32>,
    resize: Option<Stream>,
    out: Option<Out>,
}

impl Streams {
    fn complete(&self, want: Want, proto: &str) -> bool {
        let resize = want.tty && proto != "v2.channel.k8s.io" && proto != "channel.k8s.io";
        self.error.is_some()
            && (!want.stdin || self.stdin.is_some())
            && (!want.stdout || self.stdout.is_some())
            && (!want.stderr || want.tty || self.stderr.is_some())
            && (!resize || self.resize.is_some())
    }
}

async fn run(
    exe: std::path::PathBuf,
    launch: LaunchSpec,
    argv: Vec<String>,
    want: Want,
    proto: &'static str,
    mut rx: mpsc::Receiver<(String, Stream, Out)>,
) {
    let mut st = Streams::default();
    let gathered = tokio::time::timeout(STREAM_WAIT, async {
        while !st.complete(want, proto) {
            let Some((kind, s, out)) = rx.recv().await else {
                return false;
            };
            st.out.get_or_insert(out);
            match kind.as_str() {
                "error" => st.error = Some(s.id),
                "stdin" => st.stdin = Some(s),
                "stdout" => st.stdout = Some(s.id),
                "stderr" => st.stderr = Some(s.id),
                "resize" => st.resize = Some(s),
                _ => {}
            }
        }
        true
    })
    .await;
    let (Ok(true), Some(out), Some(err)) = (gathered, st.out.clone(), st.error) else {
        tracing::warn!("exec: the client did not open its streams in time");
        return;
    };
    let result = execute(&exe, &launch, &argv, want, &mut st, &out).await;
    for id in [st.stdout, st.stderr].into_iter().flatten() {
        out.fin(id).await;
    }
    if let Some(msg) = result_message(proto, &result) {
        out.data(err, msg).await;
    }
    out.fin(err).await;
}

/// The command's end: its exit code, or why it could not run.
type Outcome = Result<i32, String>;

async fn execute(
    exe: &std::path::Path,
    launch: &LaunchSpec,
    argv: &[String],
    want: Want,
    st: &mut Streams,
    out: &Out,
) -> Outcome {
    let mut cmd = launch.command(exe, argv);
    cmd.stdin(if want.stdin {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    cmd.stdout(if st.stdout.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    let stderr_to = if want.tty { st.stdout } else { st.stderr };
    cmd.stderr(if stderr_to.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    cmd.kill_on_drop(true);
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("exec {}: {e}", argv.join(" ")))?;
    if let (Some(mut input), Some(mut s)) = (child.stdin.take(), st.stdin.take()) {
        tokio::spawn(async move {
            while let Some(b) = s.rx.recv().await {
                if input.write_all(&b).await.is_err() {
                    return;
                }
            }
            let _ = input.shutdown().await;
        });
    }
    // Resize events have nowhere to go without a terminal; draining them keeps the
    // connection's reader from waiting on this stream.
    if let Some(mut r) = st.resize.take() {
        tokio::spawn(async move { while r.rx.recv().await.is_some() {} });
    }
    let mut tasks = Vec::new();
    if let (Some(o), Some(id)) = (child.stdout.take(), st.stdout) {
        tasks.push(tokio::spawn(copy(o, id, out.clone())));
    }
    if let (Some(e), Some(id)) = (child.stderr.take(), stderr_to) {
        tasks.push(tokio::spawn(copy(e, id, out.clone())));
    }
    let status = child
        .wait()
        .await
        .map_err(|e| format!("wait for {}: {e}", argv.join(" ")))?;
    for t in tasks {
        let _ = t.await;
    }
    Ok(status.code().unwrap_or(128))
}

async fn copy(mut from: impl AsyncRead + Unpin, id: u32, out: Out) {
    let mut buf = vec![0u8; CHUNK];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if !out.data(id, buf[..n].to_vec()).await {
                    return;
                }
            }
        }
    }
}

/// What goes on the error stream: v4 always writes a Status; older versions write a
/// message only when the command failed.
fn result_message(proto: &str, r: &Outcome) -> Option<Vec<u8>> {
    let v4 = proto == "v4.channel.k8s.io";
    let status = match r {
        Ok(0) if v4 => json!({"metadata": {}, "status": "Success"}),
        Ok(0) => return None,
        Ok(code) if v4 => json!({
            "metadata": {},
            "status": "Failure",
            "message": format!("command terminated with non-zero exit code: exit status {code}"),
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
        }),
        Ok(code) => {
            return Some(
                format!("command terminated with non-zero exit code: exit status {code}")
                    .into_bytes(),
            );
        }
        Err(e) if v4 => json!({
            "metadata": {},
            "status": "Failure",
            "message": e,
            "reason": "InternalError",
        }),
        Err(e) => return Some(e.clone().into_bytes()),
    };
    Some(status.to_string().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v4_status_carries_the_exit_code() {
        let m = result_message("v4.channel.k8s.io", &Ok(3)).unwrap_or_default();
        let v: serde_json::Value = serde_json::from_slice(&m).unwrap_or_default();
        assert_eq!(v["status"], "Failure");
        assert_eq!(v["reason"], "NonZeroExitCode");
        assert_eq!(v["details"]["causes"][0]["reason"], "ExitCode");
        assert_eq!(v["details"]["causes"][0]["message"], "3");
        let ok = result_message("v4.channel.k8s.io", &Ok(0)).unwrap_or_default();
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&ok).unwrap_or_default()["status"],
            "Success"
        );
        assert!(result_message("v2.channel.k8s.io", &Ok(0)).is_none());
    }

    #[test]
    fn streams_complete_by_what_was_asked() {
        let want = Want {
            stdin: false,
            stdout: true,
            stderr: true,
            tty: false,
        };
        let mut st = Streams {
            error: Some(1),
            stdout: Some(5),
            ..Default::default()
        };
        assert!(!st.complete(want, "v4.channel.k8s.io"));
        st.stderr = Some(7);
        assert!(st.complete(want, "v4.channel.k8s.io"));
        let tty = Want { tty: true, ..want };
        st.stderr = None;
        assert!(
            !st.complete(tty, "v4.channel.k8s.io"),
            "v4 with a tty needs resize"
        );
        assert!(st.complete(tty, "v2.channel.k8s.io"));
    }
}
