//! Turns a [`Notification`] into a mail people trust: a subject a human would write, a plain
//! text part that reads well in 80 columns, an HTML part with an inline PNG chart, and the
//! threading headers that keep an incident in one conversation.
//!
//! Two audiences: on-call engineers get what fired, since when, observed vs target, the
//! error budget left and when it runs out, the worst segments, exemplar session ids and the
//! runbook; stakeholders get plain language — what happened to customers, what it means, what
//! happens next — without jargon.
//!
//! Both parts are built from the same typed values; the HTML through maud, which escapes
//! every value spliced into it (spec, objective, agent and segment names come from users and
//! records). Only ids, types, counts and labels reach a mail: findings carry no personal data
//! and nothing else is read. Pure apart from the `Date` header, which the caller passes in.

use std::fmt::Write as _;
use std::time::SystemTime;

use lettre::Message;
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};
use maud::{DOCTYPE, Markup, html};

use super::AlertError;
use super::chart::{self, ChartImage};
use super::incident::{IncidentView, Notification, NotificationKind, SlaLevel, ViewStatus};
use super::policy::{Audience, Timing};
use crate::finding::{Check, Comparator, Detail, Finding, Subject, Unit};
use crate::forensics::{Forensics, Layer};
use crate::present::{fmt_value, pct};
use crate::session::EpochMs;
use crate::spec::model::{BoolSignal, Dimension, Severity};
use crate::time::format_rfc3339_ms;

/// Text part width.
pub const TEXT_WIDTH: usize = 80;

/// A rendered mail, before it becomes MIME.
#[derive(Debug, Clone, PartialEq)]
pub struct RenderedMail {
    /// The `Subject:` line.
    pub subject: String,
    /// Plain text, lines of at most [`TEXT_WIDTH`] characters.
    pub text: String,
    /// HTML; the chart, if any, is referenced as `cid:` + [`RenderedMail::chart_cid`].
    pub html: String,
    /// The inline chart, if there is something to draw.
    pub chart: Option<ChartImage>,
    /// Content-ID of the chart (without angle brackets).
    pub chart_cid: String,
}

/// Renders a notification for its audience. `timing` explains what happens next.
pub fn render(n: &Notification, timing: &Timing) -> RenderedMail {
    let chart = chart::render(n);
    let chart_cid = format!("chart.{}@slawatch", &n.id[..16.min(n.id.len())]);
    let (text, html) = match n.audience {
        Audience::Oncall => (
            oncall_text(n, timing),
            oncall_html(n, timing, chart.as_ref(), &chart_cid),
        ),
        Audience::Stakeholder => (
            stakeholder_text(n),
            stakeholder_html(n, chart.as_ref(), &chart_cid),
        ),
    };
    RenderedMail {
        subject: subject(n),
        text,
        html,
        chart,
        chart_cid,
    }
}

/// Builds the MIME message: `multipart/alternative` of text and HTML (the HTML inside
/// `multipart/related` with the chart), with the thread's headers.
pub fn build_message(
    n: &Notification,
    mail: &RenderedMail,
    from: &Mailbox,
    to: &[Mailbox],
    date: SystemTime,
) -> Result<Message, AlertError> {
    let mut b = Message::builder()
        .from(from.clone())
        .subject(mail.subject.clone())
        .date(date)
        .message_id(Some(n.message_id.clone()));
    for t in to {
        b = b.to(t.clone());
    }
    if let Some(parent) = &n.in_reply_to {
        b = b.in_reply_to(parent.clone());
    }
    if !n.references.is_empty() {
        b = b.references(n.references.join(" "));
    }
    for (name, value) in [
        ("X-Slawatch-Incident", n.thread_id.clone()),
        ("X-Slawatch-Notification", n.id.clone()),
        ("X-Slawatch-Kind", n.kind.as_str().to_owned()),
        ("Auto-Submitted", "auto-generated".to_owned()),
    ] {
        b = b.raw_header(HeaderValue::new(
            HeaderName::new_from_ascii_str(name),
            value,
        ));
    }
    let text = SinglePart::builder()
        .header(ContentType::TEXT_PLAIN)
        .body(mail.text.clone());
    let html = SinglePart::builder()
        .header(ContentType::TEXT_HTML)
        .body(mail.html.clone());
    let body = match &mail.chart {
        Some(c) => MultiPart::alternative().singlepart(text).multipart(
            MultiPart::related().singlepart(html).singlepart(
                Attachment::new_inline_with_name(mail.chart_cid.clone(), "chart.png".into()).body(
                    c.png.clone(),
                    ContentType::parse("image/png").expect("valid"),
                ),
            ),
        ),
        None => MultiPart::alternative().singlepart(text).singlepart(html),
    };
    Ok(b.multipart(body)?)
}

// ------------------------------------------------------------------ helpers --

fn firing(n: &Notification) -> Vec<&IncidentView> {
    n.incidents
        .iter()
        .filter(|v| v.status == ViewStatus::Firing)
        .collect()
}

/// The incident a mail leads with: the whole key if it fires, else the worst segment.
fn headline(n: &Notification) -> Option<&IncidentView> {
    let pool: Vec<&IncidentView> = if matches!(
        n.kind,
        NotificationKind::Resolved | NotificationKind::Recovered | NotificationKind::Escalated
    ) {
        n.incidents.iter().collect()
    } else {
        let f = firing(n);
        if f.is_empty() {
            n.incidents.iter().collect()
        } else {
            f
        }
    };
    pool.iter()
        .find(|v| v.segment.is_none())
        .or_else(|| pool.first())
        .copied()
}

fn distinct_keys(n: &Notification) -> Vec<&Vec<(String, String)>> {
    let mut keys: Vec<&Vec<(String, String)>> = Vec::new();
    for v in &n.incidents {
        if !keys.contains(&&v.key) {
            keys.push(&v.key);
        }
    }
    keys
}

/// `support-bot sp-v1 m-2026-09`
pub fn key_short(key: &[(String, String)]) -> String {
    key.iter()
        .map(|(_, v)| v.as_str())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Why incidents of the notification ended without a clean window (a reload removed the
/// objective, or the key stopped receiving sessions), one sentence per key:
/// `Ended for lack of data on support-bot sp-v1 m-2026-09: no sessions since 2026-11-01 06:00
/// UTC; superseded by prompt sp-v2.`
fn early_end_words(n: &Notification) -> Option<String> {
    let mut out: Vec<String> = Vec::new();
    for v in n.incidents.iter().filter(|v| v.retired) {
        let s = format!(
            "Ended on {}: a configuration reload removed objective {} of spec {}; \
             nothing measures it any more.",
            key_short(&v.key),
            v.latest.objective,
            v.latest.spec
        );
        if !out.contains(&s) {
            out.push(s);
        }
    }
    for v in &n.incidents {
        let Some(nd) = &v.no_data else { continue };
        let mut s = format!(
            "Ended for lack of data on {}: no sessions since {}",
            key_short(&v.key),
            when(nd.last_session)
        );
        if let Some(by) = &nd.superseded_by {
            s.push_str(&format!("; superseded by {}", superseded_words(by)));
        }
        s.push('.');
        if !out.contains(&s) {
            out.push(s);
        }
    }
    (!out.is_empty()).then(|| out.join(" "))
}

/// `prompt sp-v2 on model m-2026-11`: what differs in the key that took over.
fn superseded_words(by: &[(String, String)]) -> String {
    by.iter()
        .map(|(k, val)| match k.as_str() {
            "prompt_version" => format!("prompt {val}"),
            other => format!("{other} {val}"),
        })
        .collect::<Vec<_>>()
        .join(" on ")
}

/// What ended, for subjects and titles: the measure back within target — or, for an incident
/// whose key stopped receiving sessions, that (and what took over), never "back within target".
fn ended_words(v: &IncidentView) -> String {
    if v.retired {
        return "objective removed by a configuration reload".into();
    }
    match &v.no_data {
        Some(nd) => match &nd.superseded_by {
            Some(by) => format!(
                "no sessions any more, superseded by {}",
                superseded_words(by)
            ),
            None => "no sessions any more".into(),
        },
        None => resolved_words(&v.latest),
    }
}

fn segment_label(v: &IncidentView) -> String {
    v.segment.clone().unwrap_or_else(|| "all segments".into())
}

fn agent_name(n: &Notification) -> String {
    n.incidents
        .iter()
        .flat_map(|v| v.key.iter())
        .find(|(k, _)| k == "agent")
        .map(|(_, v)| v.clone())
        .or_else(|| n.agents.first().cloned())
        .unwrap_or_else(|| n.group.spec.clone())
}

/// A short name of what a finding measures (`success ratio`, `p99 latency`, …); `plain` for
/// stakeholders.
pub fn measure_name(f: &Finding, plain: bool) -> String {
    let pretty = |s: &str| {
        s.replace("duration_ms", "latency")
            .replace("cost_usd", "cost")
            .replace("quality.score", "quality score")
            .replace("output_tokens", "output tokens")
            .replace('_', " ")
    };
    match f.check {
        Check::BurnRate | Check::Window => {
            if plain {
                "share of conversations that went well".into()
            } else {
                format!("{} ratio", f.objective)
            }
        }
        Check::Percentile | Check::Mean | Check::Rate | Check::WindowBudget => {
            pretty(&crate::present::measure(f))
        }
        Check::Violation if is_pii(f) => "sessions leaking personal data".into(),
        Check::Violation => "sessions breaking the tool rules".into(),
        Check::HardCap => "sessions over the hard cost cap".into(),
        Check::SoftCap => "sessions over the soft cost cap".into(),
        Check::MaxRate => "fallback rate".into(),
        Check::Drift | Check::DriftSignal if plain => "way the assistant behaves".into(),
        Check::Drift | Check::DriftSignal => "behaviour drift".into(),
    }
}

/// The features a drift finding flags, e.g. `output_tokens`, `tool_mix`.
fn drifted_features(f: &Finding) -> Vec<String> {
    f.drift
        .as_ref()
        .map(|d| {
            d.features
                .iter()
                .filter(|x| x.verdict == crate::finding::FeatureVerdict::Drift)
                .map(|x| x.feature.clone())
                .collect()
        })
        .unwrap_or_default()
}

/// One line per drifted feature: `output_tokens: median 300 → median 405 (ks, p 0.0001)`.
fn drift_rows(f: &Finding) -> Vec<String> {
    let Some(d) = &f.drift else {
        return Vec::new();
    };
    let mut out: Vec<String> = d
        .features
        .iter()
        .filter(|x| x.verdict == crate::finding::FeatureVerdict::Drift)
        .map(|x| {
            let mut s = format!("{}: {} → {} ({}", x.feature, x.reference, x.current, x.test);
            if let Some(p) = x.p_adjusted.or(x.p_value) {
                let _ = write!(s, ", adjusted p {p:.2e}");
            }
            if let Some(e) = x.effect_size {
                let _ = write!(s, ", effect {e:.2} {}", x.effect);
            }
            s.push(')');
            s
        })
        .collect();
    out.push(format!("compared with {}", d.baseline));
    out
}

fn is_pii(f: &Finding) -> bool {
    // Findings stored before they carried a subject still say PII through their details.
    f.check == Check::Violation
        && (f.subject == Some(Subject::Pii)
            || f.details
                .iter()
                .any(|(d, _)| matches!(d, Detail::Pii { .. })))
}

fn target_phrase(f: &Finding) -> String {
    let word = match (f.comparator, f.unit) {
        (_, Unit::Count) if f.target == 0.0 => return "none allowed".into(),
        (Comparator::AtLeast, Unit::Ratio) => "target",
        (Comparator::AtLeast, _) => "minimum",
        (Comparator::AtMost, _) => "limit",
    };
    format!("{word} {}", fmt_value(f.target, f.unit))
}

fn breach_words(f: &Finding) -> String {
    match f.check {
        Check::Drift | Check::DriftSignal => {
            let feats = drifted_features(f);
            if feats.is_empty() {
                "behaviour drifted from its baseline".to_owned()
            } else {
                format!(
                    "behaviour drifted from its baseline in {}",
                    plural(feats.len(), "feature", "features")
                ) + &format!(" ({})", feats.join(", "))
            }
        }
        Check::Violation | Check::HardCap | Check::SoftCap => {
            let n = f.observed as u64;
            let sess = if n == 1 { "session" } else { "sessions" };
            let what = match f.check {
                Check::Violation if is_pii(f) => {
                    let dest = destinations(f);
                    if dest.is_empty() {
                        "sent personal data where the policy forbids it".to_owned()
                    } else {
                        format!("sent personal data to {}", dest.join(", "))
                    }
                }
                Check::Violation => "broke the tool-use policy".into(),
                Check::HardCap => "cost more than the hard cap".into(),
                _ => "cost more than the soft cap".into(),
            };
            format!("{n} {sess} {what}")
        }
        _ => format!(
            "{} {} ({})",
            measure_name(f, false),
            fmt_value(f.observed, f.unit),
            target_phrase(f)
        ),
    }
}

/// Where a PII finding's data went, in order of first mention (`(unknown)` when a record did
/// not say).
fn destinations(f: &Finding) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (d, _) in &f.details {
        if let Detail::Pii { destination, .. } = d {
            let dest = destination.as_deref().unwrap_or("(unknown)");
            if !out.iter().any(|x| x == dest) {
                out.push(dest.to_owned());
            }
        }
    }
    out
}

/// The PII types of a finding, in order of first mention.
fn pii_types(f: &Finding) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (d, _) in &f.details {
        if let Detail::Pii { kind, .. } = d
            && !out.iter().any(|x| x == kind)
        {
            out.push(kind.clone());
        }
    }
    out
}

fn scope(n: &Notification) -> String {
    let keys = distinct_keys(n);
    let mut s = String::new();
    if keys.len() == 1 {
        let _ = write!(s, " on {}", key_short(keys[0]));
    } else if keys.len() > 1 {
        let _ = write!(s, " on {} keys", keys.len());
    }
    let pool: Vec<&IncidentView> = if matches!(n.kind, NotificationKind::Resolved) {
        n.incidents.iter().collect()
    } else {
        firing(n)
    };
    let segments = pool.iter().filter(|v| v.segment.is_some()).count();
    if segments > 0 {
        let _ = write!(
            s,
            " · {segments} segment{}",
            if segments == 1 { "" } else { "s" }
        );
    }
    s
}

/// A duration for people: `45 min`, `2 h 15 min`, `3 days 4 h`.
pub fn human_duration(ms: i64) -> String {
    let m = (ms.max(0) + 59_999) / 60_000;
    let (d, h, mi) = (m / 1440, m % 1440 / 60, m % 60);
    match (d, h, mi) {
        (0, 0, mi) => format!("{mi} min"),
        (0, h, 0) => format!("{h} h"),
        (0, h, mi) => format!("{h} h {mi} min"),
        (d, 0, _) => format!("{d} day{}", if d == 1 { "" } else { "s" }),
        (d, h, _) => format!("{d} day{} {h} h", if d == 1 { "" } else { "s" }),
    }
}

/// `2026-11-01 14:00 UTC`
pub fn when(ms: EpochMs) -> String {
    let s = format_rfc3339_ms(ms);
    format!("{} {} UTC", &s[..10], &s[11..16])
}

fn clock(ms: EpochMs) -> String {
    format_rfc3339_ms(ms)[11..16].to_owned()
}

fn day_words(ms: EpochMs) -> String {
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    let s = format_rfc3339_ms(ms);
    let day: u32 = s[8..10].parse().unwrap_or(1);
    let month: usize = s[5..7].parse().unwrap_or(1);
    format!("{day} {} {}", MONTHS[month.clamp(1, 12) - 1], &s[..4])
}

fn window_of(f: &Finding) -> (EpochMs, EpochMs) {
    (f.window_start, f.window_end)
}

/// `between 10:00 and 11:00 UTC on 1 November 2026`
fn between(start: EpochMs, end: EpochMs) -> String {
    if day_words(start) == day_words(end - 1) {
        format!(
            "between {} and {} UTC on {}",
            clock(start),
            clock(end),
            day_words(start)
        )
    } else {
        format!("between {} and {}", when(start), when(end))
    }
}

/// Word-wraps `text` to `width`, prefixing each line with `indent` (and the first with
/// `first`). Words longer than a line are split.
pub fn wrap(text: &str, width: usize, first: &str, indent: &str) -> String {
    let mut out = String::new();
    let mut line = first.to_owned();
    let mut line_has_word = false;
    for word in text.split_whitespace() {
        let mut word = word.to_owned();
        loop {
            let room = width.saturating_sub(line.chars().count());
            let need = word.chars().count() + usize::from(line_has_word);
            if need <= room {
                if line_has_word {
                    line.push(' ');
                }
                line.push_str(&word);
                line_has_word = true;
                break;
            }
            if line_has_word {
                out.push_str(line.trim_end());
                out.push('\n');
                line = indent.to_owned();
                line_has_word = false;
                continue;
            }
            // The word alone is too long for a line: split it.
            let room = room.max(1);
            let head: String = word.chars().take(room).collect();
            let rest: String = word.chars().skip(room).collect();
            line.push_str(&head);
            out.push_str(&line);
            out.push('\n');
            line = indent.to_owned();
            if rest.is_empty() {
                break;
            }
            word = rest;
        }
    }
    if line_has_word || line.trim() != indent.trim() && !line.trim().is_empty() {
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// A `Label       value` row, the value wrapped under itself.
fn row(out: &mut String, label: &str, value: &str) {
    let first = format!("  {label:<12} ");
    let indent = " ".repeat(first.chars().count());
    out.push_str(&wrap(value, TEXT_WIDTH, &first, &indent));
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

// ------------------------------------------------------------------ subject --

/// The subject line, e.g. `[FIRING:page] support-bot-prod/success — success ratio 80%
/// (target 99%) on support-bot sp-v1 · 3 segments`.
pub fn subject(n: &Notification) -> String {
    let sev = n.group.severity.as_str();
    let name = format!("{}/{}", n.group.spec, n.group.objective);
    let Some(h) = headline(n) else {
        return format!("[{}] {name}", n.kind.as_str().to_uppercase());
    };
    let agent = agent_name(n);
    let scope = scope(n);
    let new = n.incidents.iter().filter(|v| v.new).count();
    match n.kind {
        NotificationKind::Firing => {
            format!("[FIRING:{sev}] {name} — {}{scope}", breach_words(&h.latest))
        }
        NotificationKind::Update => format!(
            "[FIRING:{sev}] {name} — {}{scope} (+{new} new)",
            breach_words(&h.latest)
        ),
        NotificationKind::Repeat => format!(
            "[FIRING:{sev}] {name} — {}{scope} (still firing after {})",
            breach_words(&h.latest),
            human_duration(n.at - n.opened_at)
        ),
        NotificationKind::Resolved => format!(
            "[RESOLVED] {name} — {}{scope} after {}",
            ended_words(h),
            human_duration(resolved_at(n).unwrap_or(n.at) - n.opened_at)
        ),
        NotificationKind::Escalated => format!(
            "[ESCALATED] {name} — now a page on{}; follow the page thread",
            scope.trim_start_matches(" on")
        ),
        NotificationKind::Breach => {
            format!("[SLA breach] {agent}: {}", stakeholder_title(&h.latest, n))
        }
        NotificationKind::ProjectedBreach => format!(
            "[SLA at risk] {agent}: {} may not be kept this period",
            promise_name(n)
        ),
        NotificationKind::Recovered => {
            format!("[SLA update] {agent}: back to normal — {}", promise_name(n))
        }
    }
}

/// `p99 latency back within target`, `no more sessions leaking personal data`.
fn resolved_words(f: &Finding) -> String {
    match f.check {
        Check::Violation | Check::HardCap | Check::SoftCap => {
            format!("no more {}", measure_name(f, false))
        }
        _ => format!("{} back within target", measure_name(f, false)),
    }
}

fn resolved_at(n: &Notification) -> Option<EpochMs> {
    n.incidents.iter().filter_map(|v| v.resolved_at).max()
}

fn promise_name(n: &Notification) -> String {
    match n.dimension {
        Dimension::Availability => "the reliability promise".into(),
        Dimension::Behavior => "the answer-quality promise".into(),
        Dimension::Governance => "the data and cost safeguards".into(),
        Dimension::Fallback => "the fallback promise".into(),
    }
}

// ------------------------------------------------------------------ on-call --

fn oncall_intro(n: &Notification) -> String {
    let Some(h) = headline(n) else {
        return String::new();
    };
    let f = &h.latest;
    let keys = distinct_keys(n);
    let on = if keys.len() == 1 {
        format!("on {}", key_short(keys[0]))
    } else {
        format!("on {} keys", keys.len())
    };
    let segs = firing(n).iter().filter(|v| v.segment.is_some()).count();
    let segs = if segs > 0 {
        format!(" {} affected.", plural(segs, "segment is", "segments are"))
    } else {
        String::new()
    };
    match n.kind {
        NotificationKind::Resolved => format!(
            "Resolved: every incident of this group has been clean since {} (held {} to \
             rule out flapping). It fired for {}{}.",
            when(resolved_at(n).unwrap_or(n.at)),
            human_duration(n.at - resolved_at(n).unwrap_or(n.at)),
            human_duration(resolved_at(n).unwrap_or(n.at) - n.opened_at),
            {
                let re: u32 = n.incidents.iter().map(|v| v.reopened).sum();
                if re > 0 {
                    format!(
                        " and came back {} in between",
                        plural(re as usize, "time", "times")
                    )
                } else {
                    String::new()
                }
            }
        ),
        NotificationKind::Escalated => format!(
            "Every incident of this {} group is now a page: it continues in the page thread \
             of {}/{}. This thread is closed.",
            n.group.severity.as_str(),
            n.group.spec,
            n.group.objective
        ),
        _ => {
            let lead = match n.kind {
                NotificationKind::Update => "New in this group: ".to_owned(),
                NotificationKind::Repeat => format!(
                    "Still firing after {}: ",
                    human_duration(n.at - n.opened_at)
                ),
                _ => String::new(),
            };
            format!(
                "{lead}{} {on}, since {}.{segs}",
                capitalize(&breach_words(f)),
                when(n.opened_at)
            )
        }
    }
}

/// What the HTML title does not say: when, where, which segments.
fn oncall_context(n: &Notification) -> String {
    let segs: Vec<String> = match n.kind {
        NotificationKind::Update => n.incidents.iter().filter(|v| v.new).collect::<Vec<_>>(),
        NotificationKind::Resolved | NotificationKind::Escalated => n.incidents.iter().collect(),
        _ => firing(n),
    }
    .iter()
    .filter_map(|v| v.segment.clone())
    .collect();
    let seg_text = match segs.len() {
        0 => String::new(),
        1 => format!(" Affected segment: {}.", segs[0]),
        _ => format!(" Affected segments: {}.", segs.join(", ")),
    };
    let keys = distinct_keys(n);
    let on = if keys.len() == 1 {
        key_short(keys[0])
    } else {
        format!("{} keys", keys.len())
    };
    match n.kind {
        NotificationKind::Firing => format!("Detected at {} on {on}.{seg_text}", when(n.opened_at)),
        NotificationKind::Update => format!(
            "Joined this incident (open since {}):{}",
            when(n.opened_at),
            if seg_text.is_empty() {
                " another key.".to_owned()
            } else {
                seg_text
                    .replace(" Affected segments:", "")
                    .replace(" Affected segment:", "")
            }
        ),
        NotificationKind::Repeat => format!(
            "Still firing {} after it was detected at {} on {on}.{seg_text}",
            human_duration(n.at - n.opened_at),
            when(n.opened_at)
        ),
        _ => oncall_intro(n),
    }
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

fn budget_rows(n: &Notification) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let Some(b) = &n.budget else {
        return out;
    };
    // One budget vocabulary everywhere — what is *left* — so a mail never says "95.9 % left"
    // in one row and "232.1 % used" in another.
    out.push((
        "Budget".into(),
        format!(
            "{} ({} into the period; errors so far run at {:.1}× the rate the SLO allows)",
            crate::present::budget_left(b.consumed, b.period_ms),
            human_duration(b.elapsed_ms),
            b.consumed_so_far_rate
        ),
    ));
    if n.kind == NotificationKind::Resolved {
        // Nothing burns any more: exhaustion and projections would only be noise.
        return out;
    }
    match (b.exhaustion_at, b.burn_rate) {
        _ if b.consumed >= 1.0 => out.push((
            "Exhaustion".into(),
            "the budget is exhausted: the SLO is breached for this period".into(),
        )),
        (Some(t), Some(r)) => out.push((
            "Exhaustion".into(),
            format!(
                "at the current {r:.1}× burn the budget runs out in {} ({})",
                human_duration(t - n.at),
                when(t)
            ),
        )),
        (_, Some(r)) => out.push((
            "Exhaustion".into(),
            format!("not at the current {r:.1}× burn (sustainable is 1×)"),
        )),
        _ => {}
    }
    if let Some(p) = b.projected {
        out.push((
            "Projection".into(),
            if p >= 1.0 {
                "none of the budget left by the period's end at the average rate so far: the \
                 SLO will be missed"
                    .to_owned()
            } else {
                format!(
                    "{} of the budget left at the period's end at the average rate so far",
                    pct(1.0 - p)
                )
            },
        ));
    }
    out
}

fn burn_row(f: &Finding) -> Option<String> {
    if f.burn_rates.is_empty() {
        return None;
    }
    Some(
        f.burn_rates
            .iter()
            .map(|b| {
                format!(
                    "{} {:.1}×/{:.1}× over {}/{} (fires at {}×)",
                    b.tier,
                    b.long_rate,
                    b.short_rate,
                    crate::duration::format_duration_ms(b.long_window_ms),
                    crate::duration::format_duration_ms(b.short_window_ms),
                    b.factor
                )
            })
            .collect::<Vec<_>>()
            .join("; "),
    )
}

fn exemplars(n: &Notification) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for v in &n.incidents {
        for e in v.latest.exemplars.iter().chain(&v.peak.exemplars) {
            if !out.contains(e) && out.len() < 10 {
                out.push(e.clone());
            }
        }
    }
    out
}

fn details(n: &Notification) -> Vec<(Detail, u64)> {
    let mut out: Vec<(Detail, u64)> = Vec::new();
    for v in n.incidents.iter().filter(|v| v.segment.is_none()) {
        for (d, c) in &v.latest.details {
            match out.iter_mut().find(|(x, _)| x == d) {
                Some(e) => e.1 = e.1.max(*c),
                None => out.push((d.clone(), *c)),
            }
        }
    }
    if out.is_empty()
        && let Some(v) = n.incidents.first()
    {
        out = v.latest.details.clone();
    }
    out
}

fn status_word(v: &IncidentView) -> String {
    let base = match v.status {
        ViewStatus::Firing => "firing",
        ViewStatus::Silenced => "silenced",
        ViewStatus::Inhibited => "inhibited",
        ViewStatus::Resolved => "resolved",
        ViewStatus::Escalated => "escalated",
    };
    if v.new {
        format!("{base}, new")
    } else {
        base.to_owned()
    }
}

fn next_steps(n: &Notification, t: &Timing) -> String {
    match n.kind {
        NotificationKind::Resolved | NotificationKind::Escalated => {
            "This thread is closed. A new breach opens a new thread.".into()
        }
        _ => format!(
            "slawatch mails this thread again when segments join (at most every {}), reminds \
             every {} while it fires, and sends a resolved notice once the group has stayed \
             clean for {}.",
            human_duration(t.group_interval_ms),
            human_duration(t.repeat_interval_ms),
            human_duration(t.cooldown_ms)
        ),
    }
}

fn observed_row(f: &Finding) -> String {
    let (s, e) = window_of(f);
    let cmp = match f.comparator {
        Comparator::AtMost => "≤",
        Comparator::AtLeast => "≥",
    };
    format!(
        "{} (target {cmp} {}) in {}–{} UTC, {} sessions",
        fmt_value(f.observed, f.unit),
        fmt_value(f.target, f.unit),
        when(s),
        clock(e),
        f.sessions
    )
}

/// The forensics a mail shows: those of the headline incident, else of the first incident
/// that has them.
fn forensics_of(n: &Notification) -> Option<(&IncidentView, &Forensics)> {
    let pick = |v: &'_ IncidentView| v.forensics.is_some();
    let v = headline(n)
        .filter(|h| pick(h))
        .or_else(|| n.incidents.iter().find(|v| pick(v)))?;
    Some((v, v.forensics.as_deref()?))
}

/// The runbook of a layer, from the objective's `runbooks`.
fn layer_runbook(n: &Notification, layer: Layer) -> Option<&str> {
    n.objective
        .as_ref()
        .and_then(|o| o.runbooks.get(&layer))
        .map(String::as_str)
}

/// The on-call rows about onset and attribution: `Onset`, `Most likely`, `Next`, and the
/// runbook of the most likely layer.
fn forensics_rows(n: &Notification) -> Vec<(String, String)> {
    let Some((v, f)) = forensics_of(n) else {
        return Vec::new();
    };
    let mut rows = Vec::new();
    if let Some(o) = &f.onset {
        rows.push((
            "Onset".to_owned(),
            capitalize(&crate::present::onset_words(o, v.detected)),
        ));
    }
    let mut candidates = f.candidates.iter();
    if let Some(top) = candidates.next() {
        rows.push((
            "Most likely".to_owned(),
            crate::present::candidate_words(top, f),
        ));
        let next = match candidates.next() {
            Some(c) => crate::present::candidate_words(c, f),
            None => "none above 10%".to_owned(),
        };
        rows.push(("Next".to_owned(), next));
        if let Some(url) = layer_runbook(n, top.layer) {
            rows.push((
                "Runbook".to_owned(),
                format!("{}: {url}", top.layer.as_str()),
            ));
        }
    }
    rows
}

fn oncall_text(n: &Notification, t: &Timing) -> String {
    let mut o = String::new();
    let state = match n.kind {
        NotificationKind::Resolved => "RESOLVED".to_owned(),
        NotificationKind::Escalated => "ESCALATED".to_owned(),
        _ => format!("FIRING ({})", n.group.severity.as_str()),
    };
    let _ = writeln!(
        o,
        "{state} · {} / {} · {}",
        n.group.spec,
        n.group.objective,
        n.dimension.as_str()
    );
    o.push('\n');
    o.push_str(&wrap(&oncall_intro(n), TEXT_WIDTH, "", ""));
    if let Some(w) = early_end_words(n) {
        o.push_str(&wrap(&w, TEXT_WIDTH, "", ""));
    }
    o.push('\n');
    if let Some(h) = headline(n) {
        let f = if n.kind == NotificationKind::Resolved {
            &h.peak
        } else {
            &h.latest
        };
        if let Some(d) = n.objective.as_ref().and_then(|o| o.description.clone()) {
            row(&mut o, "Objective", &d);
        }
        let label = if n.kind == NotificationKind::Resolved {
            "Worst"
        } else {
            "Observed"
        };
        row(&mut o, label, &observed_row(f));
        row(
            &mut o,
            "Check",
            &format!("{} — {}", f.check, check_sentence(f, n)),
        );
        for (k, v) in budget_rows(n) {
            row(&mut o, &k, &v);
        }
        if let Some(b) = burn_row(f).filter(|_| n.kind != NotificationKind::Resolved) {
            row(&mut o, "Burn rates", &b);
        }
        row(
            &mut o,
            "Key",
            &h.key
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(", "),
        );
    }
    let forensics = forensics_rows(n);
    if !forensics.is_empty() {
        o.push('\n');
        let _ = writeln!(o, "When it started and where");
        for (k, v) in &forensics {
            row(&mut o, k, v);
        }
    }
    o.push('\n');
    let _ = writeln!(o, "Affected, worst first");
    let _ = writeln!(
        o,
        "  {:<22} {:>10} {:>10}  {:<11} STATUS",
        "SEGMENT", "OBSERVED", "TARGET", "DETECTED"
    );
    for v in n.incidents.iter().take(12) {
        let f = if n.kind == NotificationKind::Resolved {
            &v.peak
        } else {
            &v.latest
        };
        let mut seg = segment_label(v);
        if distinct_keys(n).len() > 1 {
            seg = format!("{} {seg}", key_short(&v.key[1.min(v.key.len())..]));
        }
        let seg: String = seg.chars().take(22).collect();
        let line = format!(
            "  {seg:<22} {:>10} {:>10}  {:<11} {}",
            fmt_value(f.observed, f.unit),
            fmt_value(f.target, f.unit),
            &when(v.detected)[5..16],
            status_word(v)
        );
        let line: String = line.chars().take(TEXT_WIDTH).collect();
        let _ = writeln!(o, "{}", line.trim_end());
    }
    if n.incidents.len() > 12 {
        let _ = writeln!(o, "  … and {} more", n.incidents.len() - 12);
    }
    let det = details(n);
    if !det.is_empty() {
        o.push('\n');
        let _ = writeln!(o, "Counts (types and destinations only)");
        for (d, c) in det.iter().take(10) {
            o.push_str(&wrap(&format!("{d}: {c}"), TEXT_WIDTH, "  ", "    "));
        }
    }
    if let Some(h) = headline(n) {
        let rows = drift_rows(&h.latest);
        if !rows.is_empty() {
            o.push('\n');
            let _ = writeln!(o, "What changed");
            for r in rows {
                o.push_str(&wrap(&r, TEXT_WIDTH, "  ", "    "));
            }
        }
    }
    let ex = exemplars(n);
    if !ex.is_empty() {
        o.push('\n');
        let _ = writeln!(
            o,
            "Example sessions (ids only; look them up in your session store)"
        );
        o.push_str(&wrap(&ex.join(", "), TEXT_WIDTH, "  ", "  "));
    }
    if let Some(r) = n.incidents.iter().find_map(|v| v.latest.runbook.clone()) {
        o.push('\n');
        o.push_str(&wrap(&format!("Runbook: {r}"), TEXT_WIDTH, "", "  "));
    }
    o.push('\n');
    o.push_str(&wrap(&next_steps(n, t), TEXT_WIDTH, "", ""));
    o.push('\n');
    o.push_str("-- \n");
    o.push_str(&wrap(
        &format!(
            "Incident {} · mail {} of this thread ({}) · notification {}",
            n.thread_id,
            n.seq + 1,
            n.kind.as_str(),
            n.id
        ),
        TEXT_WIDTH,
        "",
        "",
    ));
    o.push_str(&wrap(
        &format!(
            "Sent to receivers {} by the slawatch notification policy.",
            if n.receivers.is_empty() {
                "(fallback recipients)".to_owned()
            } else {
                n.receivers.join(", ")
            }
        ),
        TEXT_WIDTH,
        "",
        "",
    ));
    o
}

// --------------------------------------------------------------------- HTML --
//
// Mail clients drop stylesheets, so the HTML part is nested tables with every style inline.
// maud escapes every value spliced into it; no markup is assembled from strings here.

const CSS_FONT: &str = "font-family:-apple-system,'Segoe UI',Roboto,Helvetica,Arial,sans-serif;";

/// The header's accent colour, its tint and the status label.
fn status_colors(n: &Notification) -> (&'static str, &'static str, &'static str) {
    match n.kind {
        NotificationKind::Resolved | NotificationKind::Recovered => {
            ("#2e7d32", "#e8f5e9", "Resolved")
        }
        NotificationKind::Escalated => ("#6a1b9a", "#f3e5f5", "Escalated"),
        NotificationKind::ProjectedBreach => ("#e08a00", "#fff8e1", "At risk"),
        NotificationKind::Breach => ("#c62828", "#ffebee", "Promise broken"),
        _ if n.group.severity == Severity::Page => ("#c62828", "#ffebee", "Firing · page"),
        _ => ("#e08a00", "#fff8e1", "Firing · ticket"),
    }
}

/// The document: `rows` are the table rows of the centred 640 px card.
fn html_page(title: &str, rows: Markup) -> String {
    html! {
        (DOCTYPE) "\n"
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width";
                title { (title) }
            }
            body style="margin:0;padding:0;background:#f2f4f6;" {
                table role="presentation" width="100%" cellpadding="0" cellspacing="0"
                    style="background:#f2f4f6;" {
                    tr { td align="center" style="padding:24px 12px;" {
                        table role="presentation" width="640" cellpadding="0" cellspacing="0"
                            style={ "max-width:640px;width:100%;background:#ffffff;\
                                     border-radius:8px;border:1px solid #dde2e6;" (CSS_FONT)
                                    "color:#263238;" } {
                            (rows)
                        }
                    } }
                }
            }
        }
        "\n"
    }
    .into_string()
}

fn html_header(n: &Notification, title: &str, subtitle: &str) -> Markup {
    let (color, tint, label) = status_colors(n);
    html! {
        tr {
            td style={ "background:" (color) ";height:6px;border-radius:8px 8px 0 0;\
                        font-size:0;line-height:0;" } {
                // A non-breaking space keeps clients from collapsing the empty colour bar.
                "\u{a0}"
            }
        }
        tr {
            td style="padding:22px 28px 8px 28px;" {
                span style={ "display:inline-block;background:" (tint) ";color:" (color)
                             ";font-weight:700;font-size:12px;letter-spacing:.06em;\
                             text-transform:uppercase;padding:4px 10px;border-radius:12px;" } {
                    (label)
                }
                span style="color:#607d8b;font-size:13px;padding-left:8px;" { (subtitle) }
                h1 style="margin:12px 0 4px 0;font-size:22px;line-height:1.3;color:#263238;" {
                    (title)
                }
            }
        }
    }
}

fn html_para(text: &str) -> Markup {
    html! {
        tr { td style="padding:6px 28px;font-size:15px;line-height:1.55;" { (text) } }
    }
}

fn html_chart(chart: Option<&ChartImage>, cid: &str) -> Markup {
    html! {
        @if let Some(c) = chart {
            tr {
                td style="padding:14px 28px 4px 28px;" {
                    img src={ "cid:" (cid) } width="584" alt=(c.alt)
                        style="display:block;width:100%;max-width:584px;height:auto;\
                               border:1px solid #eceff1;border-radius:6px;";
                }
            }
        }
    }
}

/// A headline figure: label, value, colour of the value.
struct Kpi {
    label: &'static str,
    value: String,
    color: &'static str,
}

fn html_kpis(cells: &[Kpi]) -> Markup {
    html! {
        tr {
            td style="padding:14px 28px 4px 28px;" {
                table role="presentation" width="100%" cellpadding="0" cellspacing="0" {
                    tr {
                        @for c in cells {
                            td valign="top" style="padding:10px 12px;background:#f7f9fa;\
                                                  border:1px solid #eceff1;border-radius:6px;" {
                                div style="font-size:11px;color:#607d8b;\
                                           text-transform:uppercase;letter-spacing:.05em;" {
                                    (c.label)
                                }
                                div style={ "font-size:19px;font-weight:700;color:" (c.color)
                                            ";padding-top:4px;" } {
                                    (c.value)
                                }
                            }
                            td style="width:8px;" {}
                        }
                    }
                }
            }
        }
    }
}

fn html_section(title: &str) -> Markup {
    html! {
        tr {
            td style="padding:18px 28px 6px 28px;font-size:13px;font-weight:700;\
                      color:#455a64;text-transform:uppercase;letter-spacing:.05em;" {
                (title)
            }
        }
    }
}

/// The on-call headline figures: observed (or worst) vs target, then the budget or, without
/// one, when it was detected and how many segments.
fn oncall_kpis(n: &Notification, h: &IncidentView) -> Vec<Kpi> {
    const INK: &str = "#263238";
    let resolved = n.kind == NotificationKind::Resolved;
    let f = if resolved { &h.peak } else { &h.latest };
    let mut cells = vec![
        Kpi {
            label: if resolved { "Worst" } else { "Observed" },
            value: fmt_value(f.observed, f.unit),
            color: if resolved { INK } else { status_colors(n).0 },
        },
        Kpi {
            label: "Target",
            value: format!(
                "{} {}",
                match f.comparator {
                    Comparator::AtMost => "≤",
                    Comparator::AtLeast => "≥",
                },
                fmt_value(f.target, f.unit)
            ),
            color: INK,
        },
    ];
    if let Some(bv) = &n.budget {
        cells.push(Kpi {
            label: "Budget left",
            value: pct((1.0 - bv.consumed).max(0.0)),
            color: if bv.consumed >= 1.0 { "#c62828" } else { INK },
        });
        cells.push(if resolved {
            Kpi {
                label: "Lasted",
                value: human_duration(resolved_at(n).unwrap_or(n.at) - n.opened_at),
                color: INK,
            }
        } else {
            Kpi {
                label: "Runs out in",
                value: match bv.exhaustion_at {
                    _ if bv.consumed >= 1.0 => "exhausted".to_owned(),
                    Some(x) => human_duration(x - n.at),
                    None => "—".to_owned(),
                },
                color: INK,
            }
        });
    } else {
        cells.push(Kpi {
            label: "Detected",
            value: format!("{} UTC", clock(n.opened_at)),
            color: INK,
        });
        cells.push(Kpi {
            label: "Segments",
            value: n
                .incidents
                .iter()
                .filter(|v| v.segment.is_some())
                .count()
                .to_string(),
            color: INK,
        });
    }
    cells
}

/// The affected incidents, worst first: segment, observed, target, detected, status.
fn html_segments(n: &Notification) -> Markup {
    const TH: &str = "padding:6px 4px;border-bottom:1px solid #cfd8dc;";
    const TD: &str = "padding:7px 4px;border-bottom:1px solid #eceff1;";
    let multi_key = distinct_keys(n).len() > 1;
    html! {
        tr {
            td style="padding:0 28px;" {
                table role="presentation" width="100%" cellpadding="0" cellspacing="0"
                    style="font-size:14px;border-collapse:collapse;" {
                    tr style="color:#607d8b;font-size:12px;text-align:left;" {
                        th style=(TH) { "Segment" }
                        th style={ (TH) "text-align:right;" } { "Observed" }
                        th style={ (TH) "text-align:right;" } { "Target" }
                        th style=(TH) { "Detected" }
                        th style=(TH) { "Status" }
                    }
                    @for v in n.incidents.iter().take(20) {
                        @let f = if n.kind == NotificationKind::Resolved { &v.peak } else { &v.latest };
                        @let color = match v.status {
                            ViewStatus::Firing => "#c62828",
                            ViewStatus::Resolved => "#2e7d32",
                            _ => "#607d8b",
                        };
                        tr {
                            td style=(TD) {
                                @if multi_key { (key_short(&v.key)) " · " }
                                (segment_label(v))
                            }
                            td style={ (TD) "text-align:right;font-weight:600;" } {
                                (fmt_value(f.observed, f.unit))
                            }
                            td style={ (TD) "text-align:right;color:#607d8b;" } {
                                (fmt_value(f.target, f.unit))
                            }
                            td style={ (TD) "color:#607d8b;" } { (&when(v.detected)[5..16]) }
                            td style={ (TD) "color:" (color) ";font-weight:600;" } {
                                (status_word(v))
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The `Details` rows of an on-call mail: what the check says, the budget, burn rates, key,
/// counts and what changed.
fn oncall_facts(n: &Notification) -> Vec<(String, String)> {
    let mut facts: Vec<(String, String)> = Vec::new();
    if let Some(h) = headline(n) {
        let f = &h.latest;
        if let Some(d) = n.objective.as_ref().and_then(|o| o.description.clone()) {
            facts.push(("Objective".into(), d));
        }
        facts.push((
            "Check".into(),
            format!("{} — {}", f.check, check_sentence(f, n)),
        ));
        facts.extend(budget_rows(n));
        if let Some(br) = burn_row(f).filter(|_| n.kind != NotificationKind::Resolved) {
            facts.push(("Burn rates".into(), br));
        }
        facts.push((
            "Key".into(),
            h.key
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(", "),
        ));
    }
    for (d, c) in details(n).iter().take(10) {
        facts.push(("Count".into(), format!("{d}: {c}")));
    }
    if let Some(h) = headline(n) {
        for r in drift_rows(&h.latest) {
            facts.push(("Changed".into(), r));
        }
    }
    facts
}

fn html_facts(facts: &[(String, String)]) -> Markup {
    html! {
        tr {
            td style="padding:0 28px;" {
                table role="presentation" width="100%" cellpadding="0" cellspacing="0"
                    style="font-size:14px;" {
                    @for (k, v) in facts {
                        tr {
                            td valign="top" style="padding:5px 10px 5px 0;color:#607d8b;\
                                                  white-space:nowrap;width:110px;" { (k) }
                            td style="padding:5px 0;line-height:1.45;" { (v) }
                        }
                    }
                }
            }
        }
    }
}

fn html_exemplars(ids: &[String]) -> Markup {
    html! {
        tr {
            td style="padding:0 28px;" {
                @for id in ids {
                    span style="display:inline-block;font-family:Menlo,Consolas,monospace;\
                                font-size:12px;background:#eceff1;border-radius:4px;\
                                padding:3px 7px;margin:0 6px 6px 0;" { (id) }
                }
                div style="font-size:12px;color:#78909c;" {
                    "Session ids only — look them up in your session store."
                }
            }
        }
    }
}

/// The runbook as a button — only for an http(s) URL: escaping keeps the markup intact but
/// would leave a `javascript:` link clickable, so anything else is shown as text.
fn html_runbook(url: &str) -> Markup {
    let lower = url.to_ascii_lowercase();
    if !(lower.starts_with("https://") || lower.starts_with("http://")) {
        return html! {
            tr {
                td style="padding:20px 28px 4px 28px;font-size:14px;color:#263238;" {
                    "Runbook: " code { (url) }
                }
            }
        };
    }
    html! {
        tr {
            td style="padding:20px 28px 4px 28px;" {
                a href=(url) style="display:inline-block;background:#263238;color:#ffffff;\
                                    text-decoration:none;font-weight:600;font-size:14px;\
                                    padding:10px 18px;border-radius:6px;" {
                    "Open the runbook"
                }
            }
        }
    }
}

/// The runbook of the attributed layer as a link (http(s) only, as [`html_runbook`]).
fn html_layer_runbook(layer: Layer, url: &str) -> Markup {
    let lower = url.to_ascii_lowercase();
    let linkable = lower.starts_with("https://") || lower.starts_with("http://");
    html! {
        tr {
            td style="padding:8px 28px 4px 28px;font-size:14px;color:#263238;" {
                @if linkable {
                    a href=(url) style="color:#1565c0;font-weight:600;" {
                        "Open the " (layer.as_str()) " runbook"
                    }
                } @else {
                    "Runbook (" (layer.as_str()) "): " code { (url) }
                }
            }
        }
    }
}

fn oncall_html(n: &Notification, t: &Timing, chart: Option<&ChartImage>, cid: &str) -> String {
    let sub = format!(
        "{}/{} · {}",
        n.group.spec,
        n.group.objective,
        n.dimension.as_str()
    );
    let title = match headline(n) {
        Some(h) if n.kind == NotificationKind::Resolved => {
            format!("{}{}", capitalize(&ended_words(h)), scope(n))
        }
        Some(h) => format!("{}{}", capitalize(&breach_words(&h.latest)), scope(n)),
        None => format!("{}/{}", n.group.spec, n.group.objective),
    };
    let facts = oncall_facts(n);
    let forensics = forensics_rows(n);
    let layer_book = forensics_of(n)
        .and_then(|(_, f)| f.candidates.first())
        .and_then(|c| Some((c.layer, layer_runbook(n, c.layer)?)));
    let ex = exemplars(n);
    let runbook = n.incidents.iter().find_map(|v| v.latest.runbook.as_deref());
    let receivers = if n.receivers.is_empty() {
        "the fallback recipients".to_owned()
    } else {
        n.receivers.join(", ")
    };
    let rows = html! {
        (html_header(n, &title, &sub))
        (html_para(&oncall_context(n)))
            @if let Some(w) = early_end_words(n) { (html_para(&w)) }
        @if let Some(h) = headline(n) {
            (html_kpis(&oncall_kpis(n, h)))
        }
        @if !forensics.is_empty() {
            (html_section("When it started and where"))
            (html_facts(&forensics))
            @if let Some((layer, url)) = layer_book {
                (html_layer_runbook(layer, url))
            }
        }
        (html_chart(chart, cid))
        (html_section("Affected, worst first"))
        (html_segments(n))
        @if !facts.is_empty() {
            (html_section("Details"))
            (html_facts(&facts))
        }
        @if !ex.is_empty() {
            (html_section("Example sessions"))
            (html_exemplars(&ex))
        }
        @if let Some(r) = runbook {
            (html_runbook(r))
        }
        (html_para(&next_steps(n, t)))
        tr {
            td style="padding:16px 28px 22px 28px;font-size:12px;color:#90a4ae;\
                      border-top:1px solid #eceff1;" {
                "Incident " code { (n.thread_id) } " · mail " (n.seq + 1)
                " of this thread · notification " code { (n.id) }
                br;
                "Sent to " (receivers) " by the slawatch notification policy."
            }
        }
    };
    html_page(&subject(n), rows)
}

// -------------------------------------------------------------- stakeholders --

/// `1 in 5`, `3 in 100`, `fewer than 1 in 1,000`.
pub fn one_in(p: f64) -> String {
    if p <= 0.0 {
        return "none".into();
    }
    if p >= 0.45 {
        let n = (p * 10.0).round().clamp(1.0, 10.0);
        return if n >= 10.0 {
            "all".into()
        } else {
            format!("{n:.0} in 10")
        };
    }
    let inv = (1.0 / p).round();
    if inv <= 20.0 && ((1.0 / p) - inv).abs() / inv < 0.12 {
        return format!("1 in {inv:.0}");
    }
    if p >= 0.01 {
        return format!("{:.0} in 100", (p * 100.0).round());
    }
    let per_k = (p * 1000.0).round();
    if per_k >= 1.0 {
        format!("{per_k:.0} in 1,000")
    } else {
        "fewer than 1 in 1,000".into()
    }
}

/// `99 in 100`, `995 in 1,000`.
fn share_words(p: f64) -> String {
    let c = (p * 100.0 * 1000.0).round() / 1000.0;
    if (c - c.round()).abs() < 1e-9 {
        format!("{:.0} in 100", c)
    } else if ((c * 10.0) - (c * 10.0).round()).abs() < 1e-6 {
        format!("{:.0} in 1,000", c * 10.0)
    } else {
        pct(p)
    }
}

fn seconds_words(ms: f64) -> String {
    let s = ms / 1000.0;
    if s >= 90.0 {
        format!("{:.0} minutes", s / 60.0)
    } else if s >= 10.0 {
        format!("{s:.0} seconds")
    } else {
        format!("{s:.1} seconds")
    }
}

fn pii_words(ty: &str) -> String {
    match ty {
        "card_number" => "card numbers".into(),
        "email" => "email addresses".into(),
        "phone" => "phone numbers".into(),
        "iban" => "bank account numbers".into(),
        "address" => "postal addresses".into(),
        "name" => "names".into(),
        other => other.replace('_', " "),
    }
}

fn list_words(items: &[String]) -> String {
    match items.len() {
        0 => String::new(),
        1 => items[0].clone(),
        n => format!("{} and {}", items[..n - 1].join(", "), items[n - 1]),
    }
}

fn plain_destination(d: &str) -> String {
    if let Some(tool) = d.strip_prefix("tool:") {
        format!("an internal tool ({tool})")
    } else if d == "log" {
        "the logs".into()
    } else {
        d.to_owned()
    }
}

/// What happened, in one plain sentence (without the time): `3 conversations with
/// support-bot passed customers' card numbers to …; our promise is that this never happens`.
fn plain_what(f: &Finding, n: &Notification) -> String {
    let kind = n.objective.as_ref().map_or("", |o| o.kind.as_str());
    let agent = format!("{}{}", agent_name(n), where_words(f.segment.as_deref()));
    let count = f.observed as u64;
    let conv = |k: u64| {
        if k == 1 {
            format!("1 conversation with {agent}")
        } else {
            format!("{k} conversations with {agent}")
        }
    };
    match f.check {
        Check::BurnRate | Check::Window => {
            let bad = 1.0 - f.observed;
            match kind {
                "fallback" => format!(
                    "of the conversations with {agent} that failed, {} were not handed over \
                     to a person or a prepared answer; we promise that at least {} are",
                    one_in(bad),
                    share_words(f.target)
                ),
                "latency" => format!(
                    "{} customer conversations with {agent} were too slow; we promise that at \
                     least {} are answered in time",
                    one_in(bad),
                    share_words(f.target)
                ),
                _ => format!(
                    "{} customer conversations with {agent} failed; we promise that at least \
                     {} go well",
                    one_in(bad),
                    share_words(f.target)
                ),
            }
        }
        Check::Percentile if f.unit == Unit::Ms => format!(
            "the slowest {} conversations with {agent} took {} or longer; we promise they \
             finish within {}",
            one_in(1.0 - percentile_of(f) / 100.0),
            seconds_words(f.observed),
            seconds_words(f.target)
        ),
        Check::Rate if signal_is(f, BoolSignal::Refusal) => format!(
            "{} conversations with {agent} ended with the assistant refusing to help; we \
             promise at most {}",
            one_in(f.observed),
            share_words(f.target)
        ),
        Check::Rate if signal_is(f, BoolSignal::Resolved) => format!(
            "only {} conversations with {agent} solved the customer's problem; we promise at \
             least {}",
            one_in(f.observed),
            share_words(f.target)
        ),
        Check::Violation if is_pii(f) => format!(
            "{} passed customers' {} to {} without masking them; our promise is that this \
             never happens",
            conv(count),
            pii_list(f),
            dest_list(f)
        ),
        Check::Violation => format!(
            "{} made the assistant do something it is not allowed to do (use a forbidden \
             tool, or call a tool over and over); our promise is that this never happens",
            conv(count)
        ),
        Check::HardCap | Check::SoftCap => format!(
            "{} cost more than the agreed maximum per conversation",
            conv(count)
        ),
        Check::WindowBudget => format!(
            "spending on {agent} in one hour reached {}, above the agreed budget of {}",
            fmt_value(f.observed, f.unit),
            fmt_value(f.target, f.unit)
        ),
        _ => format!(
            "for {agent}, the {} was {}, outside the promised {}",
            measure_name(f, true),
            fmt_value(f.observed, f.unit),
            fmt_value(f.target, f.unit)
        ),
    }
}

fn percentile_of(f: &Finding) -> f64 {
    match f.subject {
        Some(Subject::Percentile { p, .. } | Subject::CostPercentile { p }) => p,
        // Findings stored before they carried a subject: the p99 most objectives use.
        _ => 99.0,
    }
}

fn signal_is(f: &Finding, signal: BoolSignal) -> bool {
    matches!(&f.subject, Some(Subject::Rate { signal: s }) if *s == signal)
}

/// The finding's sentence for the `Check` row: without the budget clause when the mail shows
/// the budget in a row of its own, so a mail never states two budget figures.
fn check_sentence(f: &Finding, n: &Notification) -> String {
    if n.budget.is_some() {
        crate::present::headline(f)
    } else {
        crate::present::message(f)
    }
}

fn pii_list(f: &Finding) -> String {
    let types: Vec<String> = pii_types(f).iter().map(|t| pii_words(t)).collect();
    if types.is_empty() {
        "personal data".to_owned()
    } else {
        list_words(&types)
    }
}

fn dest_list(f: &Finding) -> String {
    let dests: Vec<String> = destinations(f)
        .iter()
        .map(|d| plain_destination(d))
        .collect();
    if dests.is_empty() {
        "a place that must not receive them".to_owned()
    } else {
        list_words(&dests)
    }
}

/// ` on the mobile channel`, ` (region: eu)`, or nothing for a whole key.
fn where_words(segment: Option<&str>) -> String {
    match segment.and_then(|s| s.split_once('=')) {
        Some(("channel", v)) => format!(" on the {v} channel"),
        Some((k, v)) => format!(" ({}: {v})", k.replace('_', " ")),
        None => String::new(),
    }
}

/// A short plain headline: `Customers' card numbers reached an internal tool unmasked`.
fn stakeholder_title(f: &Finding, n: &Notification) -> String {
    let kind = n.objective.as_ref().map_or("", |o| o.kind.as_str());
    match f.check {
        Check::Violation if is_pii(f) => {
            format!(
                "Customers' {} reached {} unmasked",
                pii_list(f),
                dest_list(f)
            )
        }
        Check::Violation => "The assistant broke its tool rules".into(),
        Check::HardCap | Check::SoftCap | Check::WindowBudget => {
            "Costs went over the agreed limit".into()
        }
        Check::BurnRate | Check::Window if kind == "latency" => format!(
            "{} customer conversations were too slow",
            capitalize(&one_in(1.0 - f.observed))
        ),
        Check::BurnRate | Check::Window if kind == "fallback" => {
            "Failed conversations were not handed over".into()
        }
        Check::BurnRate | Check::Window => format!(
            "{} customer conversations failed",
            capitalize(&one_in(1.0 - f.observed))
        ),
        Check::Percentile if f.unit == Unit::Ms => format!(
            "The slowest conversations took {}",
            seconds_words(f.observed)
        ),
        _ => format!(
            "{} is outside its promise",
            capitalize(&measure_name(f, true))
        ),
    }
}

fn meaning(n: &Notification, f: &Finding) -> String {
    let agent = agent_name(n);
    match n.dimension {
        Dimension::Availability => format!(
            "Customers affected did not get a timely, complete answer from {agent}. Some will \
             have waited, tried again, or contacted support another way."
        ),
        Dimension::Behavior => format!(
            "Answers from {agent} may have been less helpful than usual. Customers may need \
             more follow-up from the support team."
        ),
        Dimension::Governance if is_pii(f) => "Personal data reached a system that should only \
             receive it masked. The engineers are checking what happened and whether anything \
             must be deleted or reported. This message contains no personal data."
            .into(),
        Dimension::Governance
            if matches!(
                f.check,
                Check::HardCap | Check::SoftCap | Check::WindowBudget | Check::Percentile
            ) =>
        {
            "This affects running costs, not what customers see.".into()
        }
        Dimension::Governance => format!(
            "{agent} acted outside the rules it must follow. The engineers are checking \
             whether any customer was affected."
        ),
        Dimension::Fallback => "Customers whose conversation failed were left without a \
             handover to a person or a prepared answer."
            .into(),
    }
}

fn stakeholder_paragraphs(n: &Notification) -> (String, Vec<(String, String)>) {
    let agent = agent_name(n);
    let Some(h) = headline(n) else {
        return (String::new(), Vec::new());
    };
    let f = &h.latest;
    let (s, e) = window_of(f);
    let mut sections = Vec::new();
    let lead = match n.kind {
        NotificationKind::Breach => {
            let mut lead = format!("{}, {}.", capitalize(&between(s, e)), plain_what(f, n));
            if let Some(b) = &n.budget
                && b.consumed >= 1.0
            {
                let _ = write!(
                    lead,
                    " Problems like this have now used up everything the promise allows for \
                     the current {}-day period, so the promise is broken for this period.",
                    b.period_ms / 86_400_000
                );
            }
            lead
        }
        NotificationKind::ProjectedBreach => {
            let b = n.budget.clone();
            let mut lead = format!("{}, {}.", capitalize(&between(s, e)), plain_what(f, n));
            if let Some(b) = b {
                let days = b.period_ms / 86_400_000;
                let _ = write!(
                    lead,
                    " So far this {days}-day period, failures have used {} of what the promise \
                     allows, after {}.",
                    pct(b.consumed),
                    human_duration(b.elapsed_ms)
                );
                if b.consumed > 0.0 && b.elapsed_ms > 0 {
                    let runs_out =
                        n.at + (((1.0 - b.consumed) / b.consumed) * b.elapsed_ms as f64) as i64;
                    let _ = write!(
                        lead,
                        " If it goes on at this rate, the promise will be broken around {}.",
                        day_words(runs_out)
                    );
                }
            }
            lead
        }
        NotificationKind::Recovered => {
            let done = resolved_at(n).unwrap_or(n.at);
            format!(
                "It is over: since {} on {}, {agent} is back within its promise. The problem \
                 lasted about {}.",
                format_args!("{} UTC", clock(done)),
                day_words(done),
                human_duration(done - n.opened_at)
            )
        }
        _ => String::new(),
    };
    if n.kind != NotificationKind::Recovered {
        sections.push(("What this means for customers".to_owned(), meaning(n, f)));
    }
    let next = match n.kind {
        NotificationKind::Breach => format!(
            "The engineers on call were alerted at {} UTC and are working on it. You will get \
             a follow-up in this conversation when it is over. You do not need to do anything.",
            clock(n.opened_at)
        ),
        NotificationKind::ProjectedBreach => "Nothing is broken for good yet. The engineers on \
             call have been alerted and are working to bring failures down before the promise \
             is missed. You will hear back in this conversation."
            .into(),
        _ => {
            let broken = n.sla_level == Some(SlaLevel::Breached)
                && n.budget.as_ref().is_some_and(|b| b.consumed >= 1.0);
            if broken {
                "No action is needed from you. The promise for this period was not kept; this \
                 will show in the period's report."
                    .into()
            } else {
                "No action is needed from you. The engineers will review what happened.".into()
            }
        }
    };
    if let Some(o) = forensics_of(n).and_then(|(v, f)| Some((v, f.onset.as_ref()?)))
        && n.kind != NotificationKind::Recovered
    {
        sections.push((
            "When it started".to_owned(),
            format!(
                "Our best estimate is that the problem {}.",
                crate::present::onset_words(o.1, o.0.detected)
            ),
        ));
    }
    sections.push(("What happens next".to_owned(), next));
    if let Some(d) = n.objective.as_ref().and_then(|o| o.description.clone()) {
        sections.push(("The promise".to_owned(), d));
    }
    (lead, sections)
}

fn stakeholder_text(n: &Notification) -> String {
    let mut o = String::new();
    o.push_str("Hello,\n\n");
    let (lead, sections) = stakeholder_paragraphs(n);
    o.push_str(&wrap(&lead, TEXT_WIDTH, "", ""));
    for (title, body) in sections {
        o.push('\n');
        let _ = writeln!(o, "{title}");
        o.push_str(&wrap(&body, TEXT_WIDTH, "  ", "  "));
    }
    o.push('\n');
    o.push_str("-- \n");
    o.push_str(&wrap(
        &format!(
            "Sent by slawatch, which checks {} against its service promises. Reference {} \
             (for the engineers).",
            agent_name(n),
            n.thread_id
        ),
        TEXT_WIDTH,
        "",
        "",
    ));
    o
}

fn stakeholder_html(n: &Notification, chart: Option<&ChartImage>, cid: &str) -> String {
    let (lead, sections) = stakeholder_paragraphs(n);
    let title = match headline(n) {
        Some(_) if n.kind == NotificationKind::Recovered => {
            format!("{} is back to normal", agent_name(n))
        }
        Some(_) if n.kind == NotificationKind::ProjectedBreach => format!(
            "{} may not be kept this period",
            capitalize(&promise_name(n))
        ),
        Some(h) => stakeholder_title(&h.latest, n),
        None => agent_name(n),
    };
    let sub = format!("{} · service promise update", agent_name(n));
    let rows = html! {
        (html_header(n, &title, &sub))
        (html_para(&lead))
        (html_chart(chart, cid))
        @for (t, body) in &sections {
            (html_section(t))
            (html_para(body))
        }
        tr {
            td style="padding:18px 28px 22px 28px;font-size:12px;color:#90a4ae;\
                      border-top:1px solid #eceff1;" {
                "Sent by slawatch, which checks " (agent_name(n)) " against its service \
                 promises. Reference " code { (n.thread_id) } " (for the engineers)."
            }
        }
    };
    html_page(&subject(n), rows)
}

// ------------------------------------------------------------ incident records --

fn timeline_words(e: &super::archive::TimelineEvent) -> String {
    use super::archive::{ResolutionReason as R, TimelineEvent as E};
    match e {
        E::Onset { low, high } => format!(
            "change began (estimate; between {} and {})",
            when(*low),
            when(*high)
        ),
        E::FirstBreachWindow { window_end, .. } => format!(
            "first breaching window began (it closed at {}, which opened the incident)",
            when(*window_end)
        ),
        E::Notified {
            kind,
            audience,
            mail,
            ..
        } => {
            let mut s = format!("{} mail ({})", kind.as_str(), audience.as_str());
            if let Some(m) = mail {
                let _ = write!(s, " to {}, {}", m.recipients.join(", "), m.delivery);
                if let Some(at) = &m.sent_at {
                    let _ = write!(s, " at {at} (wall clock)");
                }
            }
            s
        }
        E::Acknowledged {
            silence_id,
            until,
            comment,
            created_by,
        } => format!(
            "silenced by {created_by} until {} ({silence_id}: {comment})",
            when(*until)
        ),
        E::Resolved { reason } => match reason {
            R::CleanWindows { clean_since } => {
                format!("resolved: clean windows since {}", when(*clean_since))
            }
            R::NoData {
                last_session,
                superseded_by,
            } => {
                let mut s = format!("resolved: no sessions since {}", when(*last_session));
                if let Some(by) = superseded_by {
                    let _ = write!(s, "; superseded by {}", superseded_words(by));
                }
                s
            }
            R::Retired => "resolved: a configuration reload removed the objective".to_owned(),
        },
    }
}

/// The facts section of a postmortem, in Markdown: summary, impact (affected counts by
/// segment and reason), timeline, onset, layer attribution with evidence, runbook links.
pub fn incident_markdown(r: &super::archive::IncidentReport) -> String {
    let rec = &r.record;
    let mut o = String::new();
    let key = key_short(&rec.key);
    let _ = writeln!(
        o,
        "# Incident {} — {}/{}\n",
        rec.id, rec.spec, rec.objective
    );
    let _ = writeln!(o, "## Summary\n");
    let _ = writeln!(
        o,
        "- **What:** {} ({}, {})",
        crate::present::message(&rec.first_finding),
        rec.dimension.as_str(),
        rec.severity.as_str()
    );
    let _ = writeln!(o, "- **Key:** `{key}`");
    if let Some(seg) = &rec.segment {
        let _ = writeln!(o, "- **Segment:** `{seg}`");
    }
    let _ = writeln!(o, "- **Status:** {}", rec.status.as_str());
    let _ = writeln!(
        o,
        "- **Detected:** {} (first breaching window {} – {}); {} breaching window{}",
        when(rec.detected),
        when(rec.since),
        when(rec.detected),
        rec.breaches,
        if rec.breaches == 1 { "" } else { "s" }
    );
    if let Some(res) = &rec.resolution {
        let _ = writeln!(
            o,
            "- **Resolved:** {} after {}",
            when(res.at),
            human_duration(res.at - rec.detected)
        );
    }
    let _ = writeln!(o, "\n## Impact\n");
    let a = &rec.affected;
    let _ = writeln!(
        o,
        "{} session{} counted against the objective ({} listed by id{}).\n",
        a.total,
        if a.total == 1 { "" } else { "s" },
        a.listed,
        if a.unlisted > 0 {
            format!(", {} counted only", a.unlisted)
        } else {
            String::new()
        }
    );
    if !a.by_segment.is_empty() {
        let _ = writeln!(o, "| segment | sessions |\n|---|---:|");
        for (s, c) in &a.by_segment {
            let _ = writeln!(o, "| {s} | {c} |");
        }
        let _ = writeln!(o);
        let _ = writeln!(o, "| reason | sessions |\n|---|---:|");
        for (s, c) in &a.by_reason {
            let _ = writeln!(o, "| {s} | {c} |");
        }
        let _ = writeln!(o);
    }
    let _ = writeln!(
        o,
        "The list: `slawatch incident affected {} --format csv`.",
        rec.id
    );
    let _ = writeln!(o, "\n## Timeline (UTC, event time)\n");
    for e in &r.timeline {
        let _ = writeln!(o, "- **{}** — {}", when(e.at), timeline_words(&e.event));
    }
    let _ = writeln!(o, "\n## Onset\n");
    let f = rec.forensics.as_ref();
    match f.and_then(|f| f.onset.as_ref()) {
        Some(on) => {
            let _ = writeln!(
                o,
                "The change {} (change point over {} panes of history).",
                crate::present::onset_words(on, rec.detected),
                on.panes
            );
        }
        None => {
            let _ = writeln!(o, "No change point in the retained history.");
        }
    }
    let _ = writeln!(o, "\n## Layer attribution\n");
    match f.filter(|f| !f.candidates.is_empty()) {
        Some(f) => {
            for (i, c) in f.candidates.iter().enumerate() {
                let book = rec
                    .runbooks
                    .get(&c.layer)
                    .map(|u| format!(" — [{} runbook]({u})", c.layer.as_str()))
                    .unwrap_or_default();
                let _ = writeln!(
                    o,
                    "{}. {}{book}",
                    i + 1,
                    crate::present::candidate_words(c, f)
                );
            }
        }
        None => {
            let _ = writeln!(o, "No candidate explains a meaningful share of the change.");
        }
    }
    if !rec.runbooks.is_empty() {
        let _ = writeln!(o, "\n## Runbooks\n");
        for (l, u) in &rec.runbooks {
            let _ = writeln!(o, "- {}: <{u}>", l.as_str());
        }
    }
    o
}

/// An incident record for a terminal.
pub fn incident_text(r: &super::archive::IncidentReport) -> String {
    let rec = &r.record;
    let mut o = String::new();
    let _ = writeln!(
        o,
        "{} · {}/{} · {} · {}",
        rec.id,
        rec.spec,
        rec.objective,
        rec.severity.as_str(),
        rec.status.as_str()
    );
    row(&mut o, "What", &crate::present::message(&rec.first_finding));
    row(&mut o, "Key", &key_short(&rec.key));
    if let Some(seg) = &rec.segment {
        row(&mut o, "Segment", seg);
    }
    row(&mut o, "Detected", &when(rec.detected));
    if let Some(f) = &rec.forensics {
        if let Some(on) = &f.onset {
            row(
                &mut o,
                "Onset",
                &crate::present::onset_words(on, rec.detected),
            );
        }
        for (i, c) in f.candidates.iter().enumerate() {
            let label = if i == 0 { "Most likely" } else { "Next" };
            row(&mut o, label, &crate::present::candidate_words(c, f));
            if let Some(u) = rec.runbooks.get(&c.layer) {
                row(&mut o, "Runbook", &format!("{}: {u}", c.layer.as_str()));
            }
        }
        if f.candidates.len() == 1 {
            row(&mut o, "Next", "none above 10%");
        }
    }
    let a = &rec.affected;
    row(
        &mut o,
        "Affected",
        &format!(
            "{} sessions ({} listed, {} counted only)",
            a.total, a.listed, a.unlisted
        ),
    );
    for (s, c) in &a.by_segment {
        row(&mut o, "  segment", &format!("{s}: {c}"));
    }
    o.push_str("\nTimeline (event time)\n");
    for e in &r.timeline {
        o.push_str(&wrap(
            &format!("{} {}", when(e.at), timeline_words(&e.event)),
            TEXT_WIDTH,
            "  ",
            "    ",
        ));
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapping_keeps_lines_short() {
        let w = wrap(&format!("a {} b", "x".repeat(200)), 20, "  ", "    ");
        assert!(w.lines().all(|l| l.chars().count() <= 20), "{w}");
        assert!(w.contains("a"));
        assert_eq!(wrap("one two", 80, "", ""), "one two\n");
    }

    #[test]
    fn plain_numbers() {
        assert_eq!(one_in(0.2), "1 in 5");
        assert_eq!(one_in(0.03), "3 in 100");
        assert_eq!(one_in(0.6), "6 in 10");
        assert_eq!(one_in(0.0004), "fewer than 1 in 1,000");
        assert_eq!(share_words(0.99), "99 in 100");
        assert_eq!(share_words(0.995), "995 in 1,000");
        assert_eq!(human_duration(135 * 60_000), "2 h 15 min");
        assert_eq!(human_duration(26 * 3_600_000), "1 day 2 h");
    }
}
