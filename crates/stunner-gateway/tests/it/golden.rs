//! Golden render cases: `testdata/render/<case>/in.yaml` (optionally with
//! `options.yaml`) renders to `out.yaml`. `UPDATE_GOLDEN=1` rewrites the outputs.
//!
//! An `in.yaml` whose first line is `# fixtures: a b` is prefixed with
//! `testdata/render/_fixtures/{a,b}.yaml`, so cases share the common objects.

use std::path::{Path, PathBuf};

use stunner_gateway::{RenderOptions, World, render};

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/render")
}

/// The manifest text of a case, fixtures expanded.
pub fn case_input(dir: &Path) -> String {
    let text = std::fs::read_to_string(dir.join("in.yaml")).unwrap();
    let mut out = String::new();
    if let Some(list) = text
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("# fixtures:"))
    {
        for f in list.split_whitespace() {
            let p = root().join("_fixtures").join(format!("{f}.yaml"));
            let fx = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            out.push_str("---\n");
            out.push_str(&fx);
            out.push('\n');
        }
    }
    out.push_str("---\n");
    out.push_str(&text);
    out
}

pub fn case_options(dir: &Path) -> RenderOptions {
    match std::fs::read_to_string(dir.join("options.yaml")) {
        Ok(t) => serde_saphyr::from_str(&t).unwrap(),
        Err(_) => RenderOptions::default(),
    }
}

pub fn cases() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(root())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir() && !p.file_name().unwrap().to_string_lossy().starts_with('_'))
        .collect();
    v.sort();
    v
}

#[test]
fn golden_cases() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut failed = Vec::new();
    let all = cases();
    for dir in &all {
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        let mut world = World::new();
        world
            .load_yaml(&name, &case_input(dir))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let d = render(&world, &case_options(dir));
        // Every rendered config must decode and validate as served (before stunnerd
        // expands `$STUNNER_ADDR`), and round-trip unchanged.
        for c in &d.configs {
            let v: serde_json::Value = serde_json::from_str(&c.to_json()).unwrap();
            let mut back = stunner_config::StunnerConfig::from_value(&v)
                .unwrap_or_else(|e| panic!("{name}: rendered config does not decode: {e}"));
            back.validate()
                .unwrap_or_else(|e| panic!("{name}: rendered config is invalid: {e}"));
            assert!(&back == c, "{name}: config does not round-trip");
        }
        let got = d.to_yaml().unwrap();
        let out = dir.join("out.yaml");
        if update {
            std::fs::write(&out, &got).unwrap();
            continue;
        }
        let want = std::fs::read_to_string(&out).unwrap_or_default();
        if want != got {
            failed.push(name);
        }
    }
    assert!(
        failed.is_empty(),
        "golden mismatch (UPDATE_GOLDEN=1 to accept): {failed:?}"
    );
    assert!(all.len() >= 60, "only {} golden cases", all.len());
}
