//! Manifest files and directories: what `render` and `standalone` read.

use std::path::{Path, PathBuf};

use stunner_gateway::World;

use crate::Error;

/// The manifest files named by `paths`: files as given, directories expanded to their
/// `*.yaml`, `*.yml` and `*.json` files (not recursive), sorted; `-` is standard input.
pub fn files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, Error> {
    let mut out = Vec::new();
    for p in paths {
        if p.as_os_str() == "-" || !p.is_dir() {
            out.push(p.clone());
            continue;
        }
        let rd = std::fs::read_dir(p).map_err(|source| Error::Read {
            path: p.display().to_string(),
            source,
        })?;
        let mut found: Vec<PathBuf> = rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|f| {
                f.is_file()
                    && f.extension()
                        .and_then(|x| x.to_str())
                        .is_some_and(|x| matches!(x, "yaml" | "yml" | "json"))
            })
            .collect();
        found.sort();
        out.extend(found);
    }
    Ok(out)
}

fn read(path: &Path) -> Result<String, Error> {
    let err = |source| Error::Read {
        path: path.display().to_string(),
        source,
    };
    if path.as_os_str() == "-" {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s).map_err(err)?;
        return Ok(s);
    }
    std::fs::read_to_string(path).map_err(err)
}

/// The texts of the manifests, with their names (for change detection and errors).
pub fn read_all(paths: &[PathBuf]) -> Result<Vec<(String, String)>, Error> {
    files(paths)?
        .into_iter()
        .map(|f| Ok((f.display().to_string(), read(&f)?)))
        .collect()
}

/// A World holding every object of the given manifest texts.
pub fn world(texts: &[(String, String)]) -> Result<World, Error> {
    let mut w = World::new();
    for (name, text) in texts {
        w.load_yaml(name, text)?;
    }
    Ok(w)
}
