//! The operator binary.

fn main() -> std::process::ExitCode {
    stunner_gateway_operator::cli::main()
}
