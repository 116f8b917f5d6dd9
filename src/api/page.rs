//! The status page at `/`: every SLA objective's standing, latency and cost over the last 24 h
//! as inline SVG charts, the latest findings and recent behaviour changes. Server-rendered with
//! maud (escaping is automatic), refreshed by the browser every 30 s, and self-contained: no
//! script, no stylesheet, font or image from anywhere else.

use maud::{DOCTYPE, Markup, PreEscaped, html};

use super::ApiState;
use super::questions::{self, Context, Question, Request};
use crate::finding::Finding;
use crate::history::query::{Filter, GroupBy, Parts, Span};
use crate::history::{HOUR_MS, OpsSummary, Resolution};
use crate::session::EpochMs;
use crate::time::format_minute;

const STYLE: &str = "
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:0;color:#1d2330;background:#f5f6f8}
header{background:#1d2330;color:#fff;padding:14px 24px}header h1{margin:0;font-size:20px}
header p{margin:2px 0 0;color:#b9c0cc;font-size:13px}
main{padding:16px 24px;max-width:1200px}
section{background:#fff;border:1px solid #dde1e7;border-radius:6px;margin:0 0 16px;padding:12px 16px}
h2{font-size:16px;margin:0 0 8px}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:5px 8px;border-bottom:1px solid #eceef2;vertical-align:top}
th{font-weight:600;color:#4a5263;font-size:12px;text-transform:uppercase;letter-spacing:.03em}
.ok{color:#14713d;font-weight:600}.breaching{color:#b42318;font-weight:600}
.charts{display:flex;gap:16px;flex-wrap:wrap}.charts figure{margin:0;flex:1 1 520px}
figcaption{font-weight:600;margin-bottom:4px}.muted{color:#6b7385}
.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.nowrap,#objectives td:nth-child(-n+4){white-space:nowrap}
";

/// Renders the page from the data directory.
pub fn render(st: &ApiState) -> Result<String, questions::AnswerError> {
    let specs = st.specs();
    let ctx = Context {
        store: &st.store,
        history: &st.history,
        specs: &specs,
    };
    let now = st.store.history_newest()?;
    let status = questions::status(
        &ctx,
        &Request::parse(Question::Status, &[]).expect("defaults are valid"),
    )?;
    let changes_req = Request::parse(Question::Changes, &[]).expect("defaults are valid");
    let changes = questions::changes(&ctx, &changes_req, changes_req.resolve(now.unwrap_or(0)))?;
    let hourly = match now {
        Some(t) => hourly(st, t)?,
        None => Vec::new(),
    };
    let all = st.store.all_findings()?;
    let mut findings: Vec<&Finding> = all.iter().collect();
    findings.sort_by(|a, b| b.window_end.cmp(&a.window_end).then(a.id.cmp(&b.id)));
    findings.truncate(10);

    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta http-equiv="refresh" content="30";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { "slawatch — status" }
                style { (PreEscaped(STYLE)) }
            }
            body {
                header {
                    h1 { "slawatch status" }
                    p {
                        @match now {
                            Some(t) => { "Newest session " (format_minute(t)) " · " }
                            None => { "No sessions yet · " }
                        }
                        (specs.len()) " spec(s) · refreshes every 30 s"
                    }
                }
                main {
                    section id="objectives" {
                        h2 { "SLA objectives" }
                        table {
                            thead { tr { th { "Spec" } th { "Objective" } th { "Dimension" } th { "State" }
                                th class="num" { "Target" } th class="num" { "Budget left" } th class="num" { "Open incidents" } th { "Latest finding" } } }
                            tbody {
                                @for o in &status.objectives {
                                    tr data-objective=(format!("{}/{}", o.spec, o.objective)) {
                                        td { (o.spec) }
                                        td { (o.objective) }
                                        td { (format!("{:?}", o.dimension).to_lowercase()) }
                                        td class=(o.state) { (o.state) }
                                        td class="num" { @if let Some(t) = o.target { (pct(t)) } @else { span.muted { "—" } } }
                                        td class="num" { @if let Some(b) = o.budget_left { (pct(b)) } @else { span.muted { "—" } } }
                                        td class="num" { (o.open_incidents.len()) }
                                        td { @if let Some(f) = o.latest_findings.first() {
                                                span.muted { (format_minute(f.window_end)) " " } (f.message)
                                             } @else { span.muted { "none" } } }
                                    }
                                }
                            }
                        }
                    }
                    section id="charts" {
                        h2 { "Last 24 hours" }
                        div.charts {
                            figure {
                                figcaption { "Session latency (p50, p99), ms per hour" }
                                (line_chart(&hourly, &[("p50", "#3366cc", |s: &OpsSummary| s.latency.quantile(0.5)),
                                                        ("p99", "#b42318", |s: &OpsSummary| s.latency.quantile(0.99))]))
                            }
                            figure {
                                figcaption { "Average cost per session, USD per hour" }
                                (line_chart(&hourly, &[("avg cost", "#14713d", |s: &OpsSummary|
                                    (s.cost_sessions > 0).then(|| s.cost_usd() / s.cost_sessions as f64))]))
                            }
                        }
                    }
                    section id="changes" {
                        h2 { "Behaviour changes, last 7 days" }
                        @if changes.changes.is_empty() { p.muted { "No new prompt version or model." } }
                        @else {
                            table {
                                thead { tr { th { "First seen" } th { "Agent" } th { "Version" } th { "Replaced" } th { "Drift verdict" } } }
                                tbody { @for c in &changes.changes {
                                    tr {
                                        td.nowrap { (format_minute(c.first_seen)) }
                                        td { (c.agent) }
                                        td { (c.prompt_version) " · " (c.model) }
                                        td { @if let Some(r) = &c.replaced { (r.prompt_version) " · " (r.model) } @else { span.muted { "—" } } }
                                        td { (c.verdict.replace('_', " ")) }
                                    }
                                } }
                            }
                        }
                    }
                    section id="findings" {
                        h2 { "Latest findings" }
                        @if findings.is_empty() { p.muted { "No findings." } }
                        @else {
                            table {
                                thead { tr { th { "Window end" } th { "Objective" } th { "Severity" } th { "Key" } th { "Finding" } } }
                                tbody { @for f in &findings {
                                    tr {
                                        td.nowrap { (format_minute(f.window_end)) }
                                        td { (f.spec) "/" (f.objective) }
                                        td { (format!("{:?}", f.severity).to_lowercase()) }
                                        td { (f.key_label().replace(',', ", ")) @if let Some(s) = &f.segment { " [" (s) "]" } }
                                        td { (f.message) }
                                    }
                                } }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(page.into_string())
}

fn pct(v: f64) -> String {
    format!("{:.2} %", v * 100.0)
}

/// One summary per hour of the 24 hours up to `now` (all keys merged).
fn hourly(
    st: &ApiState,
    now: EpochMs,
) -> Result<Vec<(EpochMs, OpsSummary)>, questions::AnswerError> {
    let last = Resolution::Hour.floor(now, st.history.pane);
    let span = Span {
        resolution: Resolution::Hour,
        from: last - 23 * HOUR_MS,
        to: last + HOUR_MS,
    };
    let buckets =
        st.store
            .history_buckets(&[span], &Filter::default(), GroupBy::None, Parts::COUNTS)?;
    let mut out: Vec<(EpochMs, OpsSummary)> = (0..24)
        .map(|i| (span.from + i * HOUR_MS, OpsSummary::unbounded()))
        .collect();
    for (t, _, s) in &buckets {
        if let Some(slot) = out.iter_mut().find(|(h, _)| h == t) {
            slot.1.merge(s);
        }
    }
    Ok(out)
}

type Series<'a> = (&'a str, &'a str, fn(&OpsSummary) -> Option<f64>);

/// A line chart of hourly values as inline SVG, with its axis labels.
fn line_chart(hours: &[(EpochMs, OpsSummary)], series: &[Series<'_>]) -> Markup {
    let (w, h, left, bottom) = (560.0, 200.0, 56.0, 24.0);
    let values: Vec<Vec<Option<f64>>> = series
        .iter()
        .map(|(_, _, f)| hours.iter().map(|(_, s)| f(s)).collect())
        .collect();
    let max = values
        .iter()
        .flatten()
        .flatten()
        .copied()
        .fold(0.0_f64, f64::max);
    let top = if max > 0.0 { max * 1.1 } else { 1.0 };
    let x = |i: usize| left + (w - left - 8.0) * i as f64 / (hours.len().max(2) - 1) as f64;
    let y = |v: f64| 8.0 + (h - bottom - 8.0) * (1.0 - v / top);
    html! {
        svg xmlns="http://www.w3.org/2000/svg" viewBox=(format!("0 0 {w} {h}")) width="100%" role="img" {
            line x1=(left) y1=(h - bottom) x2=(w - 8.0) y2=(h - bottom) stroke="#9aa3b2" {}
            line x1=(left) y1="8" x2=(left) y2=(h - bottom) stroke="#9aa3b2" {}
            @for frac in [0.0, 0.5, 1.0] {
                text x=(left - 4.0) y=(y(top * frac) + 4.0) font-size="10" text-anchor="end" fill="#6b7385" { (axis_label(top * frac)) }
            }
            @if let (Some((first, _)), Some((last, _))) = (hours.first(), hours.last()) {
                text x=(left) y=(h - 6.0) font-size="10" fill="#6b7385" { (format_minute(*first)) }
                text x=(w - 8.0) y=(h - 6.0) font-size="10" text-anchor="end" fill="#6b7385" { (format_minute(*last)) }
            }
            @for (si, (name, colour, _)) in series.iter().enumerate() {
                polyline fill="none" stroke=(colour) stroke-width="2"
                    points=(values[si].iter().enumerate().filter_map(|(i, v)| v.map(|v| format!("{:.1},{:.1}", x(i), y(v)))).collect::<Vec<_>>().join(" ")) {}
                text x=(left + 8.0 + 90.0 * si as f64) y="18" font-size="11" fill=(colour) { (name) }
            }
        }
    }
}

fn axis_label(v: f64) -> String {
    if v == 0.0 {
        "0".to_owned()
    } else if v >= 1000.0 {
        format!("{:.0}", v)
    } else if v >= 1.0 {
        format!("{:.1}", v)
    } else {
        format!("{:.4}", v)
    }
}
