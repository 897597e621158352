//! Loads a stunnerd config file the way stunnerd does (YAML or JSON, env expanded,
//! validated) and prints it with secrets masked; exits non-zero with every error.
//!
//! `cargo run -p stunner-config --example check-config -- <file>`

use std::process::ExitCode;

use stunner_config::StunnerConfig;

fn main() -> ExitCode {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: check-config <config-file>");
        return ExitCode::from(2);
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{path}: {e}");
            return ExitCode::FAILURE;
        }
    };
    match StunnerConfig::from_str(&text) {
        Ok(c) => {
            println!("{c}");
            for l in &c.listeners {
                println!("listener {:?}: {}", l.name, l.ice_uri());
            }
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprintln!("{path}: {errors}");
            ExitCode::FAILURE
        }
    }
}
