//! The one integration-test binary: each module pins one area.

mod alerts;
mod alerts_smtp;
mod api;
mod api_limit;
mod decode;
mod drift_e2e;
mod finding_wire;
mod fuzz_targets;
mod helm;
mod kafka_e2e;
mod metrics;
mod multivariate;
mod objectives;
mod otel;
mod page;
mod reload;
mod replay_e2e;
mod schema;
mod sequential_arl;
mod simulate;
mod spec_validate;
mod stats_scipy;
mod support;
mod windowing;
