//! `slawatch baseline list | show | pin | reset | export`: inspect and steer the drift
//! baselines stored in a data directory.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};

use super::load_specs;
use crate::drift::baseline::{Baseline, BaselineStatus};
use crate::drift::engine::DriftConfig;
use crate::drift::features::FeatureSet;
use crate::present::fmt_num;
use crate::spec::model::ObjectiveKind;
use crate::store::Store;
use crate::time::format_minute;

#[derive(Debug, Args)]
pub struct BaselineArgs {
    /// State directory of `slawatch run`.
    #[arg(long, default_value = "slawatch-data", global = true)]
    pub data_dir: PathBuf,
    #[command(subcommand)]
    pub command: BaselineCommand,
}

#[derive(Debug, Subcommand)]
pub enum BaselineCommand {
    /// Every stored baseline with its status.
    List,
    /// One baseline in words: status, sessions, feature summaries.
    Show { key: String },
    /// Freeze a baseline as it is and keep it as the reference until reset.
    Pin {
        key: String,
        /// Specs that define the baseline's drift objective (to fit what freezing fits).
        #[arg(long, default_value = "sla-specs")]
        specs: Vec<PathBuf>,
    },
    /// Delete a baseline: the key learns a new one from its next sessions.
    Reset { key: String },
    /// The whole baseline as JSON (for inspection).
    Export { key: String },
}

pub fn baseline(args: &BaselineArgs) -> Result<ExitCode> {
    let store = Store::open(&args.data_dir)
        .with_context(|| format!("opening the state in {}", args.data_dir.display()))?;
    let all = store.baselines()?;
    match &args.command {
        BaselineCommand::List => {
            print!("{}", render_list(&all));
        }
        BaselineCommand::Show { key } => {
            print!("{}", render_show(find(&all, key)?));
        }
        BaselineCommand::Export { key } => {
            println!("{}", serde_json::to_string_pretty(find(&all, key)?)?);
        }
        BaselineCommand::Reset { key } => {
            let b = find(&all, key)?;
            store.delete_baseline(&b.key.label())?;
            store.flush()?;
            println!(
                "reset {}: it learns a new baseline from its next sessions",
                b.key.label()
            );
        }
        BaselineCommand::Pin { key, specs } => {
            let mut b = find(&all, key)?.clone();
            let specs = load_specs(specs)?;
            let drift = specs
                .iter()
                .filter(|s| s.name == b.key.spec)
                .flat_map(|s| &s.objectives)
                .find_map(|o| match &o.kind {
                    ObjectiveKind::Drift(d) if o.name == b.key.objective => Some(d),
                    _ => None,
                })
                .with_context(|| {
                    format!(
                        "no drift objective `{}` in spec `{}` among the loaded specs",
                        b.key.objective, b.key.spec
                    )
                })?;
            let cfg = DriftConfig::new(drift);
            let at = b.last_event;
            b.pin(&FeatureSet::from_names(&drift.features), at, &cfg.life);
            store.put_baseline(&b)?;
            store.flush()?;
            println!("pinned {} ({} sessions)", b.key.label(), b.sample.sessions);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The baseline whose label equals `key`, or the only one containing it.
fn find<'a>(all: &'a [Baseline], key: &str) -> Result<&'a Baseline> {
    if let Some(b) = all.iter().find(|b| b.key.label() == key) {
        return Ok(b);
    }
    let matches: Vec<&Baseline> = all.iter().filter(|b| b.key.label().contains(key)).collect();
    match matches.as_slice() {
        [one] => Ok(one),
        [] => bail!(
            "no baseline matches `{key}`; `slawatch baseline list` shows the {} stored",
            all.len()
        ),
        many => bail!(
            "`{key}` matches {} baselines; name one of:\n  {}",
            many.len(),
            many.iter()
                .map(|b| b.key.label())
                .collect::<Vec<_>>()
                .join("\n  ")
        ),
    }
}

fn status(b: &Baseline) -> &'static str {
    match b.status {
        BaselineStatus::Learning => "learning",
        BaselineStatus::Frozen => "frozen",
        BaselineStatus::Pinned => "pinned",
    }
}

pub fn render_list(all: &[Baseline]) -> String {
    let mut s = String::new();
    if all.is_empty() {
        s.push_str("no baselines stored yet\n");
        return s;
    }
    let _ = writeln!(
        s,
        "{:<64} {:<9} {:>9}  {:<17} {:<17}",
        "baseline", "status", "sessions", "learned from", "frozen at"
    );
    for b in all {
        let _ = writeln!(
            s,
            "{:<64} {:<9} {:>9}  {:<17} {:<17}",
            b.key.label(),
            status(b),
            b.sample.sessions,
            format_minute(b.first_event),
            b.frozen_at.map_or("—".to_owned(), format_minute)
        );
    }
    s
}

pub fn render_show(b: &Baseline) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "baseline {}", b.key.label());
    let _ = writeln!(
        s,
        "  status {}, {} sessions ({} kept as rows), learned {} .. {}{}",
        status(b),
        b.sample.sessions,
        b.sample.rows.len(),
        format_minute(b.first_event),
        format_minute(b.last_event),
        b.frozen_at
            .map(|f| format!(", frozen at {}", format_minute(f)))
            .unwrap_or_default()
    );
    let names: Vec<String> = b
        .multivariate
        .as_ref()
        .map(|m| m.feature_names.clone())
        .unwrap_or_default();
    let columns = b.sample.rows.first().map_or(0, |r| r.values.len());
    for col in 0..columns {
        let values = b.sample.column(col);
        let name = names
            .get(col)
            .cloned()
            .unwrap_or_else(|| format!("column {col}"));
        let q = |p| crate::drift::stats::quantile(&values, p).map_or("—".into(), fmt_num);
        let _ = writeln!(
            s,
            "  {name:<22} median {}  p10 {}  p90 {}  ({} values)",
            q(0.5),
            q(0.1),
            q(0.9),
            values.len()
        );
    }
    for (i, (t, n)) in b.sample.binary.iter().enumerate() {
        let _ = writeln!(
            s,
            "  binary feature {i:<8} {} of {n} ({})",
            t,
            crate::present::pct(*t as f64 / (*n).max(1) as f64)
        );
    }
    for counts in &b.sample.categorical {
        let total: u64 = counts.values().sum();
        let mut top: Vec<_> = counts.iter().collect();
        top.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let shares: Vec<String> = top
            .iter()
            .take(6)
            .map(|(l, n)| {
                format!(
                    "{l} {}",
                    crate::present::pct(**n as f64 / total.max(1) as f64)
                )
            })
            .collect();
        let _ = writeln!(s, "  categories: {}", shares.join(", "));
    }
    if let Some(m) = &b.multivariate {
        let _ = writeln!(
            s,
            "  multivariate model: {} PCA components, {} clusters, fitted on {} rows",
            m.pca.n_components, m.clusters.centroids.rows, m.n_reference
        );
    }
    for st in &b.sequential {
        let _ = writeln!(
            s,
            "  sequential on {}: mean {} sd {}; CUSUM {} observations",
            names.get(st.column).cloned().unwrap_or_default(),
            fmt_num(st.mean),
            fmt_num(st.std),
            st.cusum.observations()
        );
    }
    s
}
