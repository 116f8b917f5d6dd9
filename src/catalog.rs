//! The model catalog (`models/*.yaml`): prices and context windows per model.
//!
//! Used by the decoder to derive `cost_usd` when a record has none, and context utilisation.
//! Loading reads files; lookups are pure and cached per model id.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use serde::Deserialize;

use crate::glob::glob_match;

/// The catalog shipped in the binary (`models/catalog.yaml`).
pub const EMBEDDED_CATALOG: &str = include_str!("../models/catalog.yaml");

/// One catalog entry.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ModelEntry {
    /// Exact model id, as records report it in `model`.
    #[serde(default)]
    pub id: Option<String>,
    /// Or a pattern with `*` wildcards.
    #[serde(default)]
    pub pattern: Option<String>,
    #[serde(default)]
    pub provider: Option<String>,
    /// USD per one million input tokens.
    pub input_usd_per_m_tok: f64,
    /// USD per one million output tokens.
    pub output_usd_per_m_tok: f64,
    /// Context window in tokens.
    pub context_window: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogFile {
    models: Vec<ModelEntry>,
}

/// Errors loading a catalog.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("{file}: {source}")]
    Read {
        file: String,
        source: std::io::Error,
    },
    #[error("{file}: {message}")]
    Parse { file: String, message: String },
    #[error("{file}: models[{index}]: needs exactly one of `id` or `pattern`")]
    IdOrPattern { file: String, index: usize },
}

/// All known models, in match order.
#[derive(Debug, Default)]
pub struct Catalog {
    entries: Vec<ModelEntry>,
    /// Lookups are by the handful of distinct model ids in a stream; cache them.
    cache: Mutex<HashMap<String, Option<usize>>>,
}

impl Clone for Catalog {
    fn clone(&self) -> Self {
        Catalog::from_entries(self.entries.clone())
    }
}

impl Catalog {
    pub fn from_entries(entries: Vec<ModelEntry>) -> Catalog {
        Catalog {
            entries,
            cache: Mutex::default(),
        }
    }

    /// The embedded default catalog.
    pub fn embedded() -> Catalog {
        Catalog::parse(EMBEDDED_CATALOG, "models/catalog.yaml").expect("embedded catalog is valid")
    }

    /// Parses one catalog file's text.
    pub fn parse(text: &str, file: &str) -> Result<Catalog, CatalogError> {
        let parsed: CatalogFile =
            serde_saphyr::from_str(text).map_err(|e| CatalogError::Parse {
                file: file.to_owned(),
                message: e.to_string(),
            })?;
        for (index, e) in parsed.models.iter().enumerate() {
            if e.id.is_some() == e.pattern.is_some() {
                return Err(CatalogError::IdOrPattern {
                    file: file.to_owned(),
                    index,
                });
            }
        }
        Ok(Catalog::from_entries(parsed.models))
    }

    /// Loads every `*.yaml`/`*.yml` file of a directory (sorted by name), or one file.
    pub fn load(path: &Path) -> Result<Catalog, CatalogError> {
        let read = |p: &Path| {
            std::fs::read_to_string(p).map_err(|source| CatalogError::Read {
                file: p.display().to_string(),
                source,
            })
        };
        let mut files = Vec::new();
        if path.is_dir() {
            let dir = std::fs::read_dir(path).map_err(|source| CatalogError::Read {
                file: path.display().to_string(),
                source,
            })?;
            for entry in dir.flatten() {
                let p = entry.path();
                if matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")) {
                    files.push(p);
                }
            }
            files.sort();
        } else {
            files.push(path.to_path_buf());
        }
        let mut entries = Vec::new();
        for f in files {
            let text = read(&f)?;
            entries.extend(Catalog::parse(&text, &f.display().to_string())?.entries);
        }
        Ok(Catalog::from_entries(entries))
    }

    /// The entry for a model id: an exact id wins over the first matching pattern.
    pub fn lookup(&self, model: &str) -> Option<&ModelEntry> {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        let index = *cache.entry(model.to_owned()).or_insert_with(|| {
            self.entries
                .iter()
                .position(|e| e.id.as_deref() == Some(model))
                .or_else(|| {
                    self.entries
                        .iter()
                        .position(|e| e.pattern.as_deref().is_some_and(|p| glob_match(p, model)))
                })
        });
        index.map(|i| &self.entries[i])
    }

    pub fn entries(&self) -> &[ModelEntry] {
        &self.entries
    }
}

impl ModelEntry {
    /// Cost in USD of a session's token usage.
    pub fn cost_usd(&self, input_tokens: u64, output_tokens: u64) -> f64 {
        (input_tokens as f64 * self.input_usd_per_m_tok
            + output_tokens as f64 * self.output_usd_per_m_tok)
            / 1e6
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_catalog_prices_the_demo_model() {
        let c = Catalog::embedded();
        let m = c.lookup("m-2026-09").unwrap();
        assert_eq!(m.context_window, 128_000);
        assert!((m.cost_usd(1616, 250) - 0.000904).abs() < 1e-12);
    }

    #[test]
    fn exact_id_beats_pattern_and_patterns_match_in_order() {
        let c = Catalog::embedded();
        assert_eq!(
            c.lookup("gpt-4o-mini-2024-07").unwrap().input_usd_per_m_tok,
            0.15
        );
        assert_eq!(c.lookup("gpt-4o-2024-08").unwrap().input_usd_per_m_tok, 2.5);
        assert!(c.lookup("unknown-model").is_none());
    }

    #[test]
    fn entry_needs_id_or_pattern() {
        let err = Catalog::parse(
            "models:\n  - provider: x\n    inputUsdPerMTok: 1\n    outputUsdPerMTok: 1\n    contextWindow: 1\n",
            "c.yaml",
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("exactly one of `id` or `pattern`"),
            "{err}"
        );
    }
}
