//! The `slawatch` binary: all the work is in the library; see `slawatch --help`.

fn main() -> std::process::ExitCode {
    // Logs go to stderr; `RUST_LOG=debug` for more. Data goes to stdout.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    slawatch::cli::main()
}
