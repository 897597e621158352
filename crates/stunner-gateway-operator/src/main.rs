//! The operator binary.

// jemalloc, not glibc's malloc: the operator holds a large World whose objects arrive in
// list pages and churn with every watch event, and glibc keeps the pages they freed. At
// full scale (bench/operator-scale.sh, docs/SCALING.md, 2026-12-08) the RSS at the end
// of the storm was 90 MB with glibc, 79 MB with jemalloc, 101 MB with mimalloc, on the
// same code. jemalloc's background purge thread was tried too: no lower at the end,
// higher at the peak (119 MB), so it stays off.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    stunner_gateway_operator::cli::main()
}
