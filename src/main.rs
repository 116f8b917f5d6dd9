//! The `slawatch` binary: all the work is in the library; see `slawatch --help`.

fn main() -> std::process::ExitCode {
    slawatch::cli::main()
}
