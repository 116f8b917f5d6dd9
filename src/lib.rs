//! slawatch: tells teams running AI agents in production when their agents break their
//! promises.
//!
//! Modules in data-flow order:
pub mod alerts; // mail: the only module that imports lettre
pub mod catalog; // model prices and context windows (models/)
pub mod cli;
pub mod duration; // `15m`, `28d` ⇄ ms
pub mod evaluate; // windows × objectives → findings; error budgets and burn rates
pub mod finding; // the verdict type
pub mod glob; // `*` wildcards in specs and the catalog
pub mod ingest; // sources, decoding with reject reasons, dedupe, dead letters
pub mod pipeline; // wires decode → dedupe → windows → findings
pub mod session; // a decoded session record (contract agent-session/v1)
pub mod simulate; // seeded session streams with incidents
pub mod sketch; // bounded mergeable summaries: quantiles, top-k, exemplars
pub mod spec; // YAML SLA specs: model, parsing with diagnostics, lints, explain
pub mod store; // sled: the only module that imports it
pub mod time; // RFC 3339 ⇄ epoch ms, no wall clock
pub mod windowing; // event-time windows, watermark, lateness // the command line
