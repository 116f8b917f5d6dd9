//! SLA specs: reading `sla-specs/*.yaml` into the validated [`Spec`] model, with diagnostics
//! that report every problem of a file at once.
//!
//! The pipeline is: YAML text → span-carrying [`yaml::Node`] tree (serde-saphyr) →
//! [`decode`], built on the shared toolkit of [`crate::schema`] and reading keys through the
//! shapes of [`format`], which collects every error with its `file:line:col`, property path,
//! expected-vs-found and a hint → semantic [`lint`] warnings on the specs that decoded. The
//! format itself is documented in `sla-specs/README.md`.
//!
//! Everything here is pure except [`load_paths`], the only function that reads files.
//! [`explain()`] turns a spec into a plain-language description with its burn-rate table.

pub mod decode;
pub mod explain;
pub mod format;
pub mod lint;
pub mod model;

pub use crate::schema::{diagnostic, yaml};

pub use diagnostic::{Diagnostic, Level, has_errors, make_strict, render_all, summary};
pub use explain::explain;
pub use model::*;

use crate::schema::decoder::{Ctx, Loc};
use decode::decode_document;
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

/// First place each spec name was defined: name → `file:line:col`.
type SeenNames = HashMap<String, String>;

fn parse_into(src: &str, file: &str, seen: &mut SeenNames) -> (Vec<Spec>, Vec<Diagnostic>) {
    let mut ctx = Ctx::new(src, file);
    ctx.misplaced = decode::home_of;
    let (docs, syntax) = yaml::parse_documents(src);
    ctx.syntax_errors(&syntax);
    if docs.is_empty() && syntax.is_empty() {
        ctx.warn(
            Loc::default(),
            "",
            "the file holds no YAML document, so no spec",
            None,
        );
    }
    let mut specs = Vec::new();
    for doc in docs {
        ctx.line_offset = doc.line_offset;
        let Some(decoded) = decode_document(&mut ctx, &doc.root) else {
            continue;
        };
        let name = &decoded.spec.name;
        let spot = &decoded.spans.name;
        let here = format!("{file}:{}:{}", spot.loc.line, spot.loc.col);
        if let Some(first) = seen.get(name) {
            ctx.error(
                spot.loc,
                &spot.path,
                format!("duplicate spec name `{name}`"),
                Some(format!(
                    "spec names must be unique across all loaded files; it is already defined at {first}"
                )),
            );
            continue;
        }
        seen.insert(name.clone(), here);
        lint::lint(&mut ctx, &decoded);
        specs.push(decoded.spec);
    }
    let mut diags = ctx.diags;
    diags.sort_by_key(|d| (d.line, d.col));
    (specs, diags)
}

/// Parses every YAML document of `src` (the contents of `file`, which names it in messages).
///
/// Returns the specs that are valid and every diagnostic: all errors of all documents (a
/// document with an error yields no spec) and the lint warnings of the valid ones, sorted by
/// position. Duplicate spec names within the file are reported; see [`load_paths`] for
/// duplicates across files.
pub fn parse_str(src: &str, file: &str) -> (Vec<Spec>, Vec<Diagnostic>) {
    parse_into(src, file, &mut SeenNames::new())
}

fn io_error(file: &str, message: String) -> Diagnostic {
    Diagnostic {
        severity: Level::Error,
        file: file.to_owned(),
        line: 0,
        col: 0,
        path: String::new(),
        message,
        hint: None,
        source_line: None,
        width: 1,
    }
}

fn is_yaml(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e == "yaml" || e == "yml")
}

/// Reads and parses spec files: each path is a file, or a directory whose `*.yaml`/`*.yml`
/// files (not recursively) are read in name order.
///
/// Files are named in diagnostics as given (a directory's files as `dir/file.yaml`). Besides
/// everything [`parse_str`] reports, this reports unreadable paths, directories without spec
/// files, and spec names used more than once across all files. This is the only function of
/// the spec module that does I/O.
pub fn load_paths(paths: &[PathBuf]) -> (Vec<Spec>, Vec<Diagnostic>) {
    let mut files: Vec<PathBuf> = Vec::new();
    let mut diags = Vec::new();
    for p in paths {
        if p.is_dir() {
            let entries = match std::fs::read_dir(p) {
                Ok(rd) => rd
                    .filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|f| f.is_file() && is_yaml(f))
                    .collect::<BTreeSet<_>>(),
                Err(e) => {
                    diags.push(io_error(
                        &p.display().to_string(),
                        format!("cannot read directory: {e}"),
                    ));
                    continue;
                }
            };
            if entries.is_empty() {
                let mut d = io_error(
                    &p.display().to_string(),
                    "the directory holds no `*.yaml` or `*.yml` file".into(),
                );
                d.hint = Some("spec files must end in `.yaml` or `.yml`".into());
                diags.push(d);
            }
            files.extend(entries);
        } else {
            files.push(p.clone());
        }
    }
    let mut seen_files = BTreeSet::new();
    let mut seen_names = SeenNames::new();
    let mut specs = Vec::new();
    for f in files {
        if !seen_files.insert(f.clone()) {
            continue;
        }
        let name = f.display().to_string();
        match std::fs::read_to_string(&f) {
            Ok(src) => {
                let (s, d) = parse_into(&src, &name, &mut seen_names);
                specs.extend(s);
                diags.extend(d);
            }
            Err(e) => diags.push(io_error(&name, format!("cannot read file: {e}"))),
        }
    }
    (specs, diags)
}
