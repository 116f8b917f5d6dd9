//! The toolkit both YAML formats are decoded with — SLA specs ([`crate::spec`]) and the
//! notification policy ([`crate::alerts::policy`]) — so that both report problems the same way.
//!
//! YAML text → span-carrying [`yaml::Node`] tree (serde-saphyr) → a format's own decoder, built
//! from the [`decoder::Ctx`] primitives, which collects every problem as a
//! [`diagnostic::Diagnostic`] (`file:line:col`, property path, expected vs found, a hint) and
//! reads keys through the format's [`shape::Shape`]s — the same shapes [`shape::json_schema`]
//! turns into the JSON Schemas `slawatch schema spec|policy` prints for editors.
//!
//! Pure: nothing here reads files or the clock.

pub mod decoder;
pub mod diagnostic;
pub mod shape;
pub mod yaml;
