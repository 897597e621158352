//! Test helpers: stunnerd run in this process, and the shared ones (free ports, a UDP
//! echo peer, a TURN client on a real socket) from `stunner-test-support`.

use clap::Parser;

pub use stunner_test_support::{EchoPeer, TurnClient, free_port, tempdir};

/// Runs stunnerd in this process with `args` (after the program name).
pub fn stunnerd(args: &[&str]) {
    let mut all = vec!["stunnerd"];
    all.extend_from_slice(args);
    let args = stunnerd::cli::Args::parse_from(all);
    stunnerd::run::spawn(args);
}
