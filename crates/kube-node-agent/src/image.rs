//! Container images as local executables: a table maps image-name prefixes to binaries.
//! The mapped binary is the image's entrypoint; a container `command` naming another
//! program finds it beside that binary (so one mapping can serve an image that ships
//! several programs).

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The image table, longest prefix first.
#[derive(Debug, Clone, Default)]
pub struct Images {
    entries: Vec<(String, PathBuf)>,
}

/// Our images, mapped into `bin_dir` (a cargo target directory, for instance).
const OURS: &[(&str, &str)] = &[
    ("ghcr.io/stunner-rs/stunnerd", "stunnerd"),
    (
        "ghcr.io/stunner-rs/stunner-gateway-operator",
        "stunner-gateway-operator",
    ),
    (
        "ghcr.io/stunner-rs/stunner-auth-service",
        "stunner-auth-service",
    ),
    ("ghcr.io/stunner-rs/turncat", "turncat"),
];

impl Images {
    /// Our images from `bin_dir`, then the lines `IMAGE-PREFIX EXECUTABLE` of `extra`.
    pub fn load(bin_dir: &Path, extra: Option<&Path>) -> Result<Self> {
        let mut t = Self::default();
        for (image, bin) in OURS {
            t.entries.push(((*image).into(), bin_dir.join(bin)));
        }
        if let Some(file) = extra {
            let text = std::fs::read_to_string(file)
                .map_err(|e| Error::io(format!("read image mappings {}", file.display()), e))?;
            t.parse(&text, file)?;
        }
        t.entries.sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
        Ok(t)
    }

    fn parse(&mut self, text: &str, file: &Path) -> Result<()> {
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut words = line.split_whitespace();
            match (words.next(), words.next(), words.next()) {
                (Some(prefix), Some(exe), None) => self.entries.push((prefix.into(), exe.into())),
                _ => {
                    return Err(Error::Config(format!(
                        "{}:{}: expected `IMAGE-PREFIX EXECUTABLE`, got {line:?}",
                        file.display(),
                        n + 1
                    )));
                }
            }
        }
        Ok(())
    }

    /// The program and arguments to run for a container with `image`, `command`, `args`.
    pub fn resolve(
        &self,
        image: &str,
        command: &[String],
        args: &[String],
    ) -> std::result::Result<Vec<String>, String> {
        let name = strip_tag(image);
        let exe = self
            .entries
            .iter()
            .find(|(p, _)| name.starts_with(p.as_str()))
            .map(|(_, e)| e.clone())
            .ok_or_else(|| format!("image {image:?} is not mapped to a local executable"))?;
        let mut argv = Vec::new();
        match command.split_first() {
            None => argv.push(exe.display().to_string()),
            Some((cmd0, rest)) => {
                let base = Path::new(cmd0)
                    .file_name()
                    .map(|b| b.to_string_lossy().to_string())
                    .unwrap_or_default();
                let same = exe.file_name().is_some_and(|b| b.to_string_lossy() == base);
                let beside = exe.parent().map(|d| d.join(&base));
                let prog = if same {
                    exe.clone()
                } else if let Some(b) = beside.filter(|b| b.is_file()) {
                    b
                } else {
                    return Err(format!(
                        "image {image:?} (mapped to {}) has no program {cmd0:?}",
                        exe.display()
                    ));
                };
                argv.push(prog.display().to_string());
                argv.extend(rest.iter().cloned());
            }
        }
        if !Path::new(&argv[0]).is_file() {
            return Err(format!(
                "image {image:?}: executable {} does not exist (build it first)",
                argv[0]
            ));
        }
        argv.extend(args.iter().cloned());
        Ok(argv)
    }
}

/// `registry/name:tag@digest` → `registry/name` (a registry port's colon stays).
fn strip_tag(image: &str) -> &str {
    let image = image.split('@').next().unwrap_or(image);
    match image.rfind(':') {
        Some(i) if !image[i..].contains('/') => &image[..i],
        _ => image,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_stripped() {
        assert_eq!(strip_tag("ghcr.io/a/b:1.0"), "ghcr.io/a/b");
        assert_eq!(strip_tag("localhost:5000/a/b"), "localhost:5000/a/b");
        assert_eq!(strip_tag("a/b@sha256:00"), "a/b");
    }

    #[test]
    fn mapping_lines() {
        let mut t = Images::default();
        assert!(
            t.parse("# comment\nlocal/udp-echo /usr/bin/true\n", Path::new("f"))
                .is_ok()
        );
        assert_eq!(t.entries.len(), 1);
        assert!(t.parse("just-one-word\n", Path::new("f")).is_err());
        let argv = t.resolve("local/udp-echo:1", &[], &["-p".into(), "9".into()]);
        assert_eq!(
            argv,
            Ok(vec!["/usr/bin/true".to_string(), "-p".into(), "9".into()])
        );
        assert!(t.resolve("other/image", &[], &[]).is_err());
        assert!(
            t.resolve("local/udp-echo", &["nothere".into()], &[])
                .is_err()
        );
    }
}
