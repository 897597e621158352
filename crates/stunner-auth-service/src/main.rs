//! The auth service binary.

fn main() -> std::process::ExitCode {
    stunner_auth_service::cli::main()
}
