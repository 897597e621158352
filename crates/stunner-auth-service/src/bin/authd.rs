//! The auth service under upstream's binary name.

fn main() -> std::process::ExitCode {
    stunner_auth_service::cli::main()
}
