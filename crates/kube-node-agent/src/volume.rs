//! Pod volumes as directories under the agent's state directory, written the way the
//! kubelet's atomic writer does (files are symlinks into `..data`, which is swapped in one
//! rename), so programs that follow ConfigMap updates see them as in a real cluster.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{KeyToPath, Pod, Volume};

use crate::cluster::Lookup;
use crate::env::{self, EnvContext};

/// What a volume is made of, re-read on every sync.
pub enum Content {
    /// Files written through the atomic writer (ConfigMap, Secret, projected, downward API).
    Files(BTreeMap<String, Vec<u8>>),
    /// A plain directory that the container owns (`emptyDir`).
    Scratch,
    /// A host path, bound as it is.
    Host(PathBuf),
}

/// The directory of volume `name` of a pod whose state lives in `pod_dir`.
pub fn dir(pod_dir: &Path, name: &str) -> PathBuf {
    pod_dir.join("volumes").join(name)
}

/// Reads what volume `v` should hold now. `Err` is the kubelet's mount error.
pub async fn content(ctx: &EnvContext<'_>, lookup: &Lookup, v: &Volume) -> Result<Content, String> {
    let ns = ctx.pod.metadata.namespace.clone().unwrap_or_default();
    if let Some(cm) = &v.config_map {
        return match lookup.config_map(&ns, &cm.name).await {
            Some(data) => Ok(Content::Files(pick(data, cm.items.as_deref()))),
            None if cm.optional == Some(true) => Ok(Content::Files(BTreeMap::new())),
            None => Err(format!("configmap {:?} not found", cm.name)),
        };
    }
    if let Some(s) = &v.secret {
        let name = s.secret_name.clone().unwrap_or_default();
        return match lookup.secret(&ns, &name).await {
            Some(data) => Ok(Content::Files(pick(data, s.items.as_deref()))),
            None if s.optional == Some(true) => Ok(Content::Files(BTreeMap::new())),
            None => Err(format!("secret {name:?} not found")),
        };
    }
    if v.empty_dir.is_some() {
        return Ok(Content::Scratch);
    }
    if let Some(h) = &v.host_path {
        return Ok(Content::Host(h.path.clone().into()));
    }
    if let Some(d) = &v.downward_api {
        let mut files = BTreeMap::new();
        for item in d.items.iter().flatten() {
            if let Some(f) = &item.field_ref {
                files.insert(
                    item.path.clone(),
                    env::field(ctx, &f.field_path)?.into_bytes(),
                );
            }
        }
        return Ok(Content::Files(files));
    }
    if let Some(p) = &v.projected {
        let mut files = BTreeMap::new();
        for src in p.sources.iter().flatten() {
            if let Some(t) = &src.service_account_token {
                let token = lookup
                    .token(ctx.pod, t.audience.clone(), t.expiration_seconds)
                    .await?;
                files.insert(t.path.clone(), token.into_bytes());
            }
            if let Some(cm) = &src.config_map {
                match lookup.config_map(&ns, &cm.name).await {
                    Some(data) => files.extend(pick(data, cm.items.as_deref())),
                    None if cm.optional == Some(true) => {}
                    None => return Err(format!("configmap {:?} not found", cm.name)),
                }
            }
            if let Some(s) = &src.secret {
                match lookup.secret(&ns, &s.name).await {
                    Some(data) => files.extend(pick(data, s.items.as_deref())),
                    None if s.optional == Some(true) => {}
                    None => return Err(format!("secret {:?} not found", s.name)),
                }
            }
            if let Some(d) = &src.downward_api {
                for item in d.items.iter().flatten() {
                    if let Some(f) = &item.field_ref {
                        files.insert(
                            item.path.clone(),
                            env::field(ctx, &f.field_path)?.into_bytes(),
                        );
                    }
                }
            }
        }
        return Ok(Content::Files(files));
    }
    Err(format!(
        "volume {:?}: this volume type is not emulated by the node agent",
        v.name
    ))
}

fn pick(data: BTreeMap<String, String>, items: Option<&[KeyToPath]>) -> BTreeMap<String, Vec<u8>> {
    match items {
        None => data.into_iter().map(|(k, v)| (k, v.into_bytes())).collect(),
        Some(items) => items
            .iter()
            .filter_map(|i| {
                data.get(&i.key)
                    .map(|v| (i.path.clone(), v.clone().into_bytes()))
            })
            .collect(),
    }
}

/// Writes `files` into `dir` unless they are already there: a new timestamped directory,
/// then `..data` is repointed at it in one rename, and top-level names link through it.
pub fn write_atomic(dir: &Path, files: &BTreeMap<String, Vec<u8>>) -> std::io::Result<bool> {
    std::fs::create_dir_all(dir)?;
    let data = dir.join("..data");
    if let Ok(cur) = std::fs::read_link(&data) {
        let cur = dir.join(cur);
        let same = files
            .iter()
            .all(|(k, v)| std::fs::read(cur.join(k)).ok().as_deref() == Some(v.as_slice()))
            && count_files(&cur) == files.len();
        if same {
            return Ok(false);
        }
    }
    let stamp = format!(
        "..{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default()
    );
    let new = dir.join(&stamp);
    for (k, v) in files {
        let p = new.join(k);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(p, v)?;
    }
    std::fs::create_dir_all(&new)?;
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(&stamp, &tmp)?;
    let old = std::fs::read_link(&data).ok();
    std::fs::rename(&tmp, &data)?;
    for k in files.keys() {
        let top = k.split('/').next().unwrap_or(k);
        let link = dir.join(top);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(Path::new("..data").join(top), &link)?;
        }
    }
    // Names that are gone, and the previous timestamped directory.
    for e in std::fs::read_dir(dir)?.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if !name.starts_with("..")
            && !files
                .keys()
                .any(|k| k.split('/').next() == Some(name.as_str()))
        {
            let _ = std::fs::remove_file(e.path());
        }
    }
    if let Some(old) = old {
        let _ = std::fs::remove_dir_all(dir.join(old));
    }
    Ok(true)
}

fn count_files(dir: &Path) -> usize {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.flatten()
        .map(|e| {
            if e.path().is_dir() {
                count_files(&e.path())
            } else {
                1
            }
        })
        .sum()
}

/// The pod's `/etc/hosts`.
pub fn hosts(pod: &Pod, ip: &str) -> String {
    let name = pod.metadata.name.clone().unwrap_or_default();
    format!("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n{ip}\t{name}\n")
}

/// The pod's `/etc/resolv.conf`: the agent's DNS server and the cluster search path.
pub fn resolv_conf(ns: &str, dns: &str, domain: &str) -> String {
    format!("search {ns}.svc.{domain} svc.{domain} {domain}\nnameserver {dns}\noptions ndots:5\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_writer_swaps_and_prunes() {
        let base = std::env::temp_dir().join(format!("kna-vol-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let mut files = BTreeMap::from([("a.conf".to_string(), b"one".to_vec())]);
        assert!(write_atomic(&base, &files).unwrap_or(false));
        assert_eq!(
            std::fs::read(base.join("a.conf")).ok(),
            Some(b"one".to_vec())
        );
        assert!(
            !write_atomic(&base, &files).unwrap_or(true),
            "unchanged content is not rewritten"
        );
        files.insert("a.conf".into(), b"two".to_vec());
        files.insert("b".into(), b"x".to_vec());
        assert!(write_atomic(&base, &files).unwrap_or(false));
        assert_eq!(
            std::fs::read(base.join("a.conf")).ok(),
            Some(b"two".to_vec())
        );
        files.remove("b");
        assert!(write_atomic(&base, &files).unwrap_or(false));
        assert!(std::fs::symlink_metadata(base.join("b")).is_err());
        let stamps = std::fs::read_dir(&base)
            .map(|d| {
                d.flatten()
                    .filter(|e| e.file_name().to_string_lossy().starts_with("..1"))
                    .count()
            })
            .unwrap_or(0);
        assert_eq!(stamps, 1, "old timestamped directories are removed");
        let _ = std::fs::remove_dir_all(&base);
    }
}
