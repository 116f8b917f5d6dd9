//! The `slawatch` binary: all the work is in the library; see `slawatch --help`.

/// jemalloc rather than glibc's allocator: the history keeps tens of MB of ranked sessions
/// decoded between flushes, and with glibc every later allocation on the record path got
/// slower (benches/README.md §4g).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    // Crash points named in `FAILPOINTS` (test builds only).
    #[cfg(feature = "failpoints")]
    let _crash_points = fail::FailScenario::setup();
    slawatch::cli::main()
}
