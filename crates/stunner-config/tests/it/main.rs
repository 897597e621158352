//! Integration tests of the config contract.
#![allow(clippy::unwrap_used)] // a test fails loudly by design

mod diff;
mod parse;
mod props;
mod validate;

use std::path::PathBuf;

/// Reads a file of `testdata/`.
pub(crate) fn testdata(name: &str) -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// An environment with only these variables.
pub(crate) fn env_of(
    vars: &'static [(&'static str, &'static str)],
) -> impl Fn(&str) -> Option<String> {
    move |name| {
        vars.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
    }
}
