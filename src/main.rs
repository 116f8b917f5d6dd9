//! The `slawatch` binary: all the work is in the library; see `slawatch --help`.

fn main() -> std::process::ExitCode {
    // Crash points named in `FAILPOINTS` (test builds only).
    #[cfg(feature = "failpoints")]
    let _crash_points = fail::FailScenario::setup();
    slawatch::cli::main()
}
