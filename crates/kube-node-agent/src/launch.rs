//! `kube-node-agent launch`: the last step before a container's program runs. A fresh,
//! single-threaded process joins the pod's network namespace, gets a private mount
//! namespace with the pod's volumes bound at their mount paths (and the pod's own
//! `/etc/resolv.conf` and `/etc/hosts`), then execs the program. The agent spawns it with
//! the container's environment already set.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;

use nix::mount::{MsFlags, mount};
use nix::sched::{CloneFlags, setns, unshare};

use crate::error::{Error, Result};

/// One bind mount: a host path shown at `target` inside the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    /// Host path.
    pub source: PathBuf,
    /// Path the container sees.
    pub target: PathBuf,
    /// Mounted read-only.
    pub read_only: bool,
}

impl Bind {
    /// The `--bind` argument form, `SOURCE=TARGET[:ro]`.
    pub fn to_arg(&self) -> String {
        format!(
            "{}={}{}",
            self.source.display(),
            self.target.display(),
            if self.read_only { ":ro" } else { "" }
        )
    }

    /// Parses `SOURCE=TARGET[:ro]`.
    pub fn parse(arg: &str) -> Result<Self> {
        let (source, rest) = arg
            .split_once('=')
            .ok_or_else(|| Error::Config(format!("--bind {arg:?}: expected SOURCE=TARGET[:ro]")))?;
        let (target, read_only) = match rest.strip_suffix(":ro") {
            Some(t) => (t, true),
            None => (rest, false),
        };
        Ok(Self {
            source: source.into(),
            target: target.into(),
            read_only,
        })
    }
}

/// Joins `netns` (a `/run/netns/NAME` path; none for host-network pods), binds `binds`,
/// changes to `workdir` and execs `argv`. Returns only on failure.
pub fn run(
    netns: Option<PathBuf>,
    binds: &[Bind],
    workdir: Option<PathBuf>,
    argv: &[OsString],
) -> Error {
    match prepare(netns, binds) {
        Ok(()) => {}
        Err(e) => return e,
    }
    let Some((prog, args)) = argv.split_first() else {
        return Error::Config("launch: no program given".into());
    };
    let mut cmd = std::process::Command::new(prog);
    cmd.args(args);
    if let Some(dir) = workdir {
        cmd.current_dir(dir);
    }
    let err = cmd.exec();
    Error::io(format!("exec {}", prog.to_string_lossy()), err)
}

fn prepare(netns: Option<PathBuf>, binds: &[Bind]) -> Result<()> {
    if let Some(ns) = netns {
        let f =
            std::fs::File::open(&ns).map_err(|e| Error::io(format!("open {}", ns.display()), e))?;
        setns(f, CloneFlags::CLONE_NEWNET)
            .map_err(|e| Error::io(format!("setns {}", ns.display()), e.into()))?;
    }
    if binds.is_empty() {
        return Ok(());
    }
    unshare(CloneFlags::CLONE_NEWNS).map_err(|e| Error::io("unshare(CLONE_NEWNS)", e.into()))?;
    // Nothing mounted here may leak back to the host's mount namespace.
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| Error::io("make / private", e.into()))?;
    for b in binds {
        mount(
            Some(&b.source),
            &b.target,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .map_err(|e| {
            Error::io(
                format!("bind {} on {}", b.source.display(), b.target.display()),
                e.into(),
            )
        })?;
        if b.read_only {
            mount(
                None::<&str>,
                &b.target,
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
                None::<&str>,
            )
            .map_err(|e| {
                Error::io(
                    format!("remount {} read-only", b.target.display()),
                    e.into(),
                )
            })?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_args_round_trip() {
        let b = Bind {
            source: "/var/lib/x".into(),
            target: "/etc/stunnerd".into(),
            read_only: true,
        };
        assert_eq!(b.to_arg(), "/var/lib/x=/etc/stunnerd:ro");
        assert_eq!(Bind::parse(&b.to_arg()).ok(), Some(b));
        assert!(Bind::parse("nothing").is_err());
    }
}
