//! The stunnerd binary.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = stunnerd::cli::Args::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("stunnerd: cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(stunnerd::run::run(args))
}
