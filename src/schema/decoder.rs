//! The decoding toolkit both document decoders share (SLA specs in [`crate::spec`], the
//! notification policy in [`crate::alerts::policy`]): a [`Ctx`] that walks a span-carrying
//! [`Node`] tree and collects every problem as a [`Diagnostic`] — `file:line:col`, property
//! path, expected vs found, and a hint saying what would be valid — and the primitives every
//! format is made of (strings, names, numbers, fractions, durations, enums, lists, mappings
//! checked against their [`Shape`]). It never stops at the first error, never parses YAML
//! syntax itself and never does I/O.

use super::diagnostic::{Diagnostic, Level, did_you_mean, one_of};
use super::shape::Shape;
use super::yaml::{Node, SNode, SyntaxError, fmt_float};
use crate::duration::{format_duration_ms, parse_duration_ms};
use serde_saphyr::Spanned;
use std::collections::HashMap;

/// A position in the file: 1-based line and column, and how many characters to underline.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Loc {
    /// 1-based line (0 = unknown).
    pub line: u32,
    /// 1-based column in characters (0 = unknown).
    pub col: u32,
    /// Characters to underline.
    pub width: u32,
}

/// A position together with the property path it belongs to (for lints).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Spot {
    /// Where.
    pub loc: Loc,
    /// Property path, e.g. `spec.window.step`.
    pub path: String,
}

/// Where the parts of a decoded spec were written, for the lints.
pub struct Ctx<'a> {
    /// The file, as named in messages.
    pub file: &'a str,
    src: &'a str,
    lines: Vec<&'a str>,
    /// Everything found so far.
    pub diags: Vec<Diagnostic>,
    /// Line offset of the document being decoded (see [`super::yaml::Document`]).
    pub line_offset: u32,
    /// Where an unknown `key` of the mapping named `here` belongs instead, as a hint (the
    /// format's own knowledge; none by default).
    pub misplaced: fn(key: &str, here: &str) -> Option<String>,
}

/// `path.key` (just `key` at the top).
pub fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// `path[i]`.
pub fn index(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

fn clamp(v: u64) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

/// Formats a ratio as a percentage: `0.995` → `99.5%`.
pub fn pct(v: f64) -> String {
    let s = format!("{:.4}", v * 100.0);
    let s = s.trim_end_matches('0').trim_end_matches('.');
    format!("{s}%")
}

/// A mapping being decoded.
pub struct Fields<'n> {
    /// Its entries, in file order.
    pub entries: &'n [(Spanned<String>, SNode)],
    /// Where the mapping is.
    pub loc: Loc,
    /// Its property path.
    pub path: String,
    /// The keys it may have (`None`: any name, e.g. labels).
    shape: Option<&'static Shape>,
}

impl<'n> Fields<'n> {
    /// The value of `key`. A decoder may only read keys its [`Shape`] declares, so that the
    /// shape (and the JSON Schema made from it) cannot miss a key the decoder accepts.
    pub fn get(&self, key: &str) -> Option<&'n SNode> {
        debug_assert!(
            self.shape.is_none_or(|s| s.declares(key)),
            "the decoder reads `{key}`, which shape `{}` does not declare",
            self.shape.map_or("", |s| s.name)
        );
        self.entries
            .iter()
            .find(|(k, _)| k.value == key)
            .map(|(_, v)| v)
    }

    /// The key `key` itself (for positions).
    pub fn key(&self, key: &str) -> Option<&'n Spanned<String>> {
        self.entries
            .iter()
            .find(|(k, _)| k.value == key)
            .map(|(k, _)| k)
    }

    /// The property path of `key`.
    pub fn path(&self, key: &str) -> String {
        join(&self.path, key)
    }
}

/// What a kind of slawatch document is called, for the header checks of [`Ctx::document`].
#[derive(Debug, Clone, Copy)]
pub struct DocKind {
    /// Its `kind`, e.g. `AgentSLA`.
    pub kind: &'static str,
    /// What a file of it is called: `spec`, `notification policy`.
    pub name: &'static str,
    /// With its article: `an SLA spec`.
    pub a_name: &'static str,
    /// What to do with one found in the wrong place: ``check it with `slawatch validate` ``.
    pub usage: &'static str,
}

/// The only supported `apiVersion`.
pub const API_VERSION: &str = "slawatch/v1";

/// An SLA spec.
pub const AGENT_SLA: DocKind = DocKind {
    kind: "AgentSLA",
    name: "spec",
    a_name: "an SLA spec",
    usage: "check it with `slawatch validate`",
};

/// A notification policy.
pub const NOTIFICATION_POLICY: DocKind = DocKind {
    kind: "NotificationPolicy",
    name: "notification policy",
    a_name: "a notification policy",
    usage: "give it to `slawatch run --policy`",
};

/// Every kind of slawatch document (for the hint when a file holds the wrong one).
pub const KINDS: &[DocKind] = &[AGENT_SLA, NOTIFICATION_POLICY];

impl<'a> Ctx<'a> {
    /// A context for `src`, named `file` in messages.
    pub fn new(src: &'a str, file: &'a str) -> Self {
        Ctx {
            file,
            src,
            lines: src.lines().collect(),
            diags: Vec::new(),
            line_offset: 0,
            misplaced: |_, _| None,
        }
    }

    /// Reports YAML syntax errors, with a hint for the usual mistakes.
    pub fn syntax_errors(&mut self, errors: &[SyntaxError]) {
        for e in errors {
            let loc = Loc {
                line: e.line,
                col: e.col,
                width: 1,
            };
            let hint = syntax_hint(&e.message, self.src, e.line, e.col);
            self.error(loc, "", format!("invalid YAML: {}", e.message), hint);
        }
    }

    /// How many errors were reported so far.
    pub fn error_count(&self) -> usize {
        self.diags.iter().filter(|d| d.is_error()).count()
    }

    /// Records a diagnostic at `loc`.
    pub fn emit(
        &mut self,
        severity: Level,
        loc: Loc,
        path: &str,
        message: impl Into<String>,
        hint: Option<String>,
    ) {
        let source_line = if loc.line > 0 {
            self.lines
                .get(loc.line as usize - 1)
                .map(|s| (*s).to_owned())
        } else {
            None
        };
        self.diags.push(Diagnostic {
            severity,
            file: self.file.to_owned(),
            line: loc.line,
            col: loc.col,
            path: path.to_owned(),
            message: message.into(),
            hint,
            source_line,
            width: loc.width.max(1),
        });
    }

    /// Records an error.
    pub fn error(
        &mut self,
        loc: Loc,
        path: &str,
        message: impl Into<String>,
        hint: Option<String>,
    ) {
        self.emit(Level::Error, loc, path, message, hint);
    }

    /// Records a warning.
    pub fn warn(&mut self, loc: Loc, path: &str, message: impl Into<String>, hint: Option<String>) {
        self.emit(Level::Warning, loc, path, message, hint);
    }

    fn loc_of(&self, l: &serde_saphyr::Location, width: u64) -> Loc {
        if l.line() == 0 {
            return Loc::default();
        }
        Loc {
            line: clamp(l.line()) + self.line_offset,
            col: clamp(l.column()),
            width: clamp(width).max(1),
        }
    }

    /// The position of a node (the whole scalar is underlined).
    pub fn loc(&self, n: &SNode) -> Loc {
        let l = if n.referenced.line() > 0 {
            &n.referenced
        } else {
            &n.defined
        };
        let width = if n.value.is_scalar() {
            l.span().len()
        } else {
            1
        };
        self.loc_of(l, width)
    }

    /// The position of a mapping key.
    pub fn key_loc(&self, k: &Spanned<String>) -> Loc {
        self.loc_of(&k.referenced, k.referenced.span().len())
    }

    /// Reports `n` as not being `expected`, with a hint for the usual mistakes.
    pub fn type_error(&mut self, n: &SNode, path: &str, expected: &str, hint: Option<String>) {
        let hint = hint.or_else(|| match &n.value {
            Node::Str(s) if s.trim().parse::<f64>().is_ok() => {
                Some(format!("remove the quotes: `{}`", s.trim()))
            }
            Node::Seq(items) if items.len() == 1 && items[0].value.is_scalar() => {
                let text = match &items[0].value {
                    Node::Str(s) => s.clone(),
                    Node::Int(i) => i.to_string(),
                    Node::Float(f) => fmt_float(*f),
                    Node::Bool(b) => b.to_string(),
                    _ => String::new(),
                };
                Some(format!("write the value without brackets: `{text}`"))
            }
            _ => None,
        });
        let msg = format!("expected {expected}, found {}", n.value.describe());
        let loc = self.loc(n);
        self.error(loc, path, msg, hint);
    }

    /// `node` as a mapping, or a type error.
    /// The root mapping of a document of kind `want`, whose keys are `shape`'s.
    ///
    /// `apiVersion` and `kind` are checked first: a document of another kind (another
    /// slawatch kind, or a foreign manifest) gets one error and is not checked any further.
    pub fn document<'n>(
        &mut self,
        root: &'n SNode,
        want: &DocKind,
        shape: &'static Shape,
    ) -> Option<Fields<'n>> {
        let kind = want.kind;
        let expected = format!(
            "{} (a mapping with {})",
            want.a_name,
            one_of(&shape.keys()).replace(" or ", " and ")
        );
        let doc = self.as_map(root, "", &expected, Some(shape))?;
        if let (Some(an), Some(kn)) = (doc.get("apiVersion"), doc.get("kind"))
            && let (Node::Str(a), Node::Str(k)) = (&an.value, &kn.value)
            && a != API_VERSION
            && k != kind
            && !a.starts_with("slawatch")
        {
            let loc = self.loc(an);
            self.error(
                loc,
                "",
                format!("not a slawatch {}: apiVersion `{a}`, kind `{k}`", want.name),
                Some(format!(
                    "slawatch reads documents with `apiVersion: {API_VERSION}` and `kind: {kind}`; keep other manifests out of the {} files",
                    want.name
                )),
            );
            return None;
        }
        let mut foreign = false;
        match doc.get("apiVersion") {
            None => {
                self.error(
                    doc.loc,
                    "apiVersion",
                    "missing required key `apiVersion`",
                    Some(format!("add `apiVersion: {API_VERSION}`")),
                );
                foreign = true;
            }
            Some(n) => {
                if let Some(v) = self.string(n, "apiVersion")
                    && v != API_VERSION
                {
                    let loc = self.loc(n);
                    self.error(
                        loc,
                        "apiVersion",
                        format!("unsupported apiVersion `{v}`"),
                        Some(format!("the supported apiVersion is `{API_VERSION}`")),
                    );
                    foreign = true;
                }
            }
        }
        match doc.get("kind") {
            None => {
                self.error(
                    doc.loc,
                    "kind",
                    "missing required key `kind`",
                    Some(format!("add `kind: {kind}`")),
                );
                foreign = true;
            }
            Some(n) => {
                if let Some(v) = self.string(n, "kind")
                    && v != kind
                {
                    let loc = self.loc(n);
                    let hint = if let Some(other) = KINDS.iter().find(|k| k.kind == v) {
                        format!(
                            "this is {}: {}; {} says `kind: {kind}`",
                            other.a_name, other.usage, want.a_name
                        )
                    } else if did_you_mean(&v, &[kind]).is_some() {
                        format!("did you mean `{kind}`? It is the only supported kind")
                    } else {
                        format!("{} says `kind: {kind}`", want.a_name)
                    };
                    self.error(loc, "kind", format!("unsupported kind `{v}`"), Some(hint));
                    foreign = true;
                }
            }
        }
        if foreign {
            return None;
        }
        self.check_keys(&doc);
        Some(doc)
    }

    /// `n` as a mapping whose keys are free names (labels, receivers); duplicate keys are
    /// reported.
    pub fn free_map<'n>(&mut self, n: &'n SNode, path: &str, expected: &str) -> Option<Fields<'n>> {
        let f = self.as_map(n, path, expected, None)?;
        self.check_keys(&f);
        Some(f)
    }

    fn as_map<'n>(
        &mut self,
        n: &'n SNode,
        path: &str,
        expected: &str,
        shape: Option<&'static Shape>,
    ) -> Option<Fields<'n>> {
        match &n.value {
            Node::Map(entries) => Some(Fields {
                entries,
                loc: self.loc(n),
                path: path.to_owned(),
                shape,
            }),
            _ => {
                self.type_error(n, path, expected, None);
                None
            }
        }
    }

    /// Reports unknown and duplicate keys of `f`.
    fn check_keys(&mut self, f: &Fields<'_>) {
        let known = f.shape.map(|s| s.keys()).unwrap_or_default();
        let mut seen: HashMap<&str, u32> = HashMap::new();
        for (k, _) in f.entries {
            let path = f.path(&k.value);
            let loc = self.key_loc(k);
            if let Some(first) = seen.get(k.value.as_str()) {
                self.error(
                    loc,
                    &path,
                    format!("duplicate key `{}`", k.value),
                    Some(format!(
                        "it was already given on line {first}; keep one of them"
                    )),
                );
                continue;
            }
            seen.insert(&k.value, loc.line);
            let Some(shape) = f.shape else { continue };
            if shape.accepts(&k.value) {
                continue;
            }
            let hint = if let Some(s) = did_you_mean(&k.value, &known) {
                format!("did you mean `{s}`?")
            } else if let Some(h) = (self.misplaced)(&k.value, shape.name) {
                h
            } else {
                format!(
                    "valid keys here: {}",
                    known
                        .iter()
                        .map(|k| format!("`{k}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            self.error(loc, &path, format!("unknown key `{}`", k.value), Some(hint));
        }
    }

    /// `n` as a mapping of `shape`: unknown keys (with a "did you mean" or where they belong)
    /// and duplicate keys are reported.
    pub fn fields<'n>(
        &mut self,
        n: &'n SNode,
        path: &str,
        expected: &str,
        shape: &'static Shape,
    ) -> Option<Fields<'n>> {
        let f = self.as_map(n, path, expected, Some(shape))?;
        self.check_keys(&f);
        Some(f)
    }

    /// The value of a required key, or a "missing required key" error.
    pub fn require<'n>(
        &mut self,
        f: &Fields<'n>,
        key: &str,
        hint: Option<String>,
    ) -> Option<&'n SNode> {
        debug_assert!(
            f.shape
                .is_none_or(|s| s.field(key).is_some_and(|d| d.required)),
            "the decoder requires `{key}`, which its shape does not declare required"
        );
        let v = f.get(key);
        if v.is_none() {
            self.error(
                f.loc,
                &f.path(key),
                format!("missing required key `{key}`"),
                hint,
            );
        }
        v
    }

    /// A string (a number or boolean is an error: quoting it makes it text).
    pub fn string(&mut self, n: &SNode, path: &str) -> Option<String> {
        match &n.value {
            Node::Str(s) => Some(s.clone()),
            Node::Int(_) | Node::Float(_) | Node::Bool(_) => {
                self.type_error(
                    n,
                    path,
                    "a string",
                    Some("quote it to use it as text".into()),
                );
                None
            }
            _ => {
                self.type_error(n, path, "a string", None);
                None
            }
        }
    }

    /// A string that is not blank.
    pub fn nonempty_string(&mut self, n: &SNode, path: &str) -> Option<String> {
        let s = self.string(n, path)?;
        if s.trim().is_empty() {
            let loc = self.loc(n);
            self.error(loc, path, "must not be empty", None);
            return None;
        }
        Some(s)
    }

    /// A scalar rendered as a string (labels and attribute values).
    pub fn scalar_text(&mut self, n: &SNode, path: &str) -> Option<String> {
        match &n.value {
            Node::Str(s) => Some(s.clone()),
            Node::Int(i) => Some(i.to_string()),
            Node::Float(f) => Some(fmt_float(*f)),
            Node::Bool(b) => Some(b.to_string()),
            _ => {
                self.type_error(n, path, "a string", None);
                None
            }
        }
    }

    /// A list of items, also accepting a single scalar as a one-item list.
    pub fn list<'n>(
        &mut self,
        n: &'n SNode,
        path: &str,
        expected: &str,
    ) -> Option<Vec<(&'n SNode, String)>> {
        match &n.value {
            Node::Seq(items) => Some(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| (item, index(path, i)))
                    .collect(),
            ),
            Node::Map(_) | Node::Null => {
                self.type_error(n, path, expected, None);
                None
            }
            _ => Some(vec![(n, path.to_owned())]),
        }
    }

    /// A list of non-blank strings (one string is a one-item list).
    pub fn string_list(&mut self, n: &SNode, path: &str) -> Option<Vec<String>> {
        let items = self.string_items(n, path)?;
        Some(items.into_iter().map(|(s, _, _)| s).collect())
    }

    /// Like [`Ctx::string_list`], with each item's node and path (for later checks).
    pub fn string_items<'n>(
        &mut self,
        n: &'n SNode,
        path: &str,
    ) -> Option<Vec<(String, &'n SNode, String)>> {
        let items = self.list(n, path, "a list of strings")?;
        let mut out = Vec::new();
        let mut ok = true;
        for (item, p) in items {
            match self.nonempty_string(item, &p) {
                Some(s) => out.push((s, item, p)),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    /// A list of values of an enum (one value is a one-item list), as indexes into `valid`.
    pub fn enum_list(
        &mut self,
        n: &SNode,
        path: &str,
        what: &str,
        valid: &[&str],
    ) -> Option<Vec<usize>> {
        let items = self.list(n, path, &format!("a list of {what} values"))?;
        let mut out = Vec::new();
        let mut ok = true;
        for (item, p) in items {
            match self.enum_value(item, &p, what, valid) {
                Some(i) => out.push(i),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    /// A mapping of free names to scalar values (labels, attributes), in file order.
    pub fn string_map(&mut self, n: &SNode, path: &str) -> Option<Vec<(String, String)>> {
        let expected = "a mapping of names to values";
        if !matches!(n.value, Node::Map(_)) {
            self.type_error(n, path, expected, Some("e.g. `{team: cx-ai}`".into()));
            return None;
        }
        let f = self.free_map(n, path, expected)?;
        let mut out = Vec::new();
        let mut ok = true;
        for (k, v) in f.entries {
            match self.scalar_text(v, &f.path(&k.value)) {
                Some(s) => out.push((k.value.clone(), s)),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    /// A name (letters, digits, `-`, `_`, `.`) at `loc`; `what` is e.g. `objective name`.
    pub fn check_name(&mut self, loc: Loc, path: &str, what: &str, s: &str) -> bool {
        if valid_name(s) {
            return true;
        }
        self.error(
            loc,
            path,
            format!("invalid {what} `{s}`: use letters, digits, `-`, `_` and `.` only"),
            name_hint(s),
        );
        false
    }

    /// `true` or `false` (YAML 1.1's `yes`/`no` get a hint).
    pub fn bool(&mut self, n: &SNode, path: &str) -> Option<bool> {
        match &n.value {
            Node::Bool(b) => Some(*b),
            Node::Str(s) => {
                let hint = match s.to_ascii_lowercase().as_str() {
                    "yes" | "on" | "y" => Some("write `true`".to_owned()),
                    "no" | "off" | "n" => Some("write `false`".to_owned()),
                    _ => Some("write `true` or `false`".to_owned()),
                };
                self.type_error(n, path, "`true` or `false`", hint);
                None
            }
            _ => {
                self.type_error(n, path, "`true` or `false`", None);
                None
            }
        }
    }

    /// Any number.
    pub fn number(&mut self, n: &SNode, path: &str, expected: &str) -> Option<f64> {
        match &n.value {
            Node::Int(i) => Some(*i as f64),
            Node::Float(f) => Some(*f),
            Node::Str(s) if s.trim().ends_with('%') => {
                self.type_error(
                    n,
                    path,
                    expected,
                    Some("percentages are only for fractions; write a plain number".into()),
                );
                None
            }
            Node::Str(s) if s.trim().starts_with('$') => {
                let rest = s.trim().trim_start_matches('$');
                self.type_error(
                    n,
                    path,
                    expected,
                    Some(format!(
                        "amounts are in USD without a currency sign: `{rest}`"
                    )),
                );
                None
            }
            _ => {
                self.type_error(n, path, expected, None);
                None
            }
        }
    }

    /// A number that must be `> 0` (or `>= 0` when `allow_zero`).
    pub fn positive(
        &mut self,
        n: &SNode,
        path: &str,
        expected: &str,
        allow_zero: bool,
    ) -> Option<f64> {
        let v = self.number(n, path, expected)?;
        let bad = if allow_zero { v < 0.0 } else { v <= 0.0 };
        if bad {
            let loc = self.loc(n);
            let must = if allow_zero {
                "0 or more"
            } else {
                "more than 0"
            };
            self.error(
                loc,
                path,
                format!("must be {must}, found `{}`", fmt_num(v)),
                None,
            );
            return None;
        }
        Some(v)
    }

    /// A whole number of at least `min`.
    pub fn uint(&mut self, n: &SNode, path: &str, min: u64) -> Option<u64> {
        let expected = if min == 0 {
            "a whole number"
        } else {
            "a positive whole number"
        };
        let v = match &n.value {
            Node::Int(i) => *i as f64,
            Node::Float(f) if f.fract() == 0.0 => *f,
            _ => {
                self.type_error(n, path, expected, None);
                return None;
            }
        };
        let problem = if v < min as f64 {
            format!("must be at least {min}, found `{}`", fmt_num(v))
        } else if v > 1e12 {
            format!("`{}` is too large", fmt_num(v))
        } else {
            return Some(v as u64);
        };
        let loc = self.loc(n);
        self.error(loc, path, problem, None);
        None
    }

    /// A fraction: `99%`, or a number in `[0, 1]`. A bare number above 1 is ambiguous.
    pub fn fraction(&mut self, n: &SNode, path: &str) -> Option<f64> {
        let loc = self.loc(n);
        let expected = "a fraction like `99%` or `0.99`";
        let out_of_range = |ctx: &mut Self, shown: &str| {
            ctx.error(
                loc,
                path,
                format!("`{shown}` is not a fraction: it must lie between 0% and 100%"),
                None,
            );
            None
        };
        match &n.value {
            Node::Int(1) => {
                self.error(
                    loc,
                    path,
                    "`1` is ambiguous as a fraction",
                    Some("write `100%` (or `1.0`) for all, or `1%` for one percent".into()),
                );
                None
            }
            Node::Int(i) => {
                let v = *i as f64;
                if (0.0..=1.0).contains(&v) {
                    Some(v)
                } else {
                    self.ambiguous(loc, path, v, &i.to_string())
                }
            }
            Node::Float(v) => {
                if (0.0..=1.0).contains(v) {
                    Some(*v)
                } else {
                    self.ambiguous(loc, path, *v, &fmt_float(*v))
                }
            }
            Node::Str(s) => {
                let t = s.trim();
                if let Some(num) = t.strip_suffix('%') {
                    match num.trim().parse::<f64>() {
                        Ok(v) if (0.0..=100.0).contains(&v) => Some(v / 100.0),
                        Ok(_) => out_of_range(self, t),
                        Err(_) => {
                            self.type_error(n, path, expected, None);
                            None
                        }
                    }
                } else if let Ok(v) = t.parse::<f64>() {
                    let hint = if (0.0..=1.0).contains(&v) {
                        format!("write `{t}` without quotes, or `{}`", pct(v))
                    } else if v <= 100.0 {
                        format!("write `{t}%` or `{}`", fmt_num(v / 100.0))
                    } else {
                        "write a percentage like `99%` or a number between 0 and 1".to_owned()
                    };
                    self.error(
                        loc,
                        path,
                        format!("string `{s:?}` is ambiguous as a fraction"),
                        Some(hint),
                    );
                    None
                } else {
                    self.type_error(n, path, expected, None);
                    None
                }
            }
            _ => {
                self.type_error(n, path, expected, None);
                None
            }
        }
    }

    fn ambiguous(&mut self, loc: Loc, path: &str, v: f64, shown: &str) -> Option<f64> {
        if v > 1.0 && v <= 100.0 {
            self.error(
                loc,
                path,
                format!("`{shown}` is ambiguous as a fraction"),
                Some(format!("write `{shown}%` or `{}`", fmt_num(v / 100.0))),
            );
        } else {
            self.error(
                loc,
                path,
                format!("`{shown}` is not a fraction: it must lie between 0% and 100%"),
                Some("write a percentage like `99%` or a number between 0 and 1".into()),
            );
        }
        None
    }

    /// A duration string (`90s`, `15m`, `1h30m`, `28d`) in ms.
    pub fn duration(&mut self, n: &SNode, path: &str, allow_zero: bool) -> Option<i64> {
        let loc = self.loc(n);
        let expected = "a duration like `90s`, `15m`, `1h` or `28d`";
        let ms = match &n.value {
            Node::Str(s) => match parse_duration_ms(s.trim()) {
                Ok(ms) => ms,
                Err(_) => {
                    self.error(
                        loc,
                        path,
                        format!("invalid duration `{s}`"),
                        Some(duration_hint(s)),
                    );
                    return None;
                }
            },
            Node::Int(i) => {
                let hint = if *i > 0 && i % 60 == 0 {
                    format!(
                        "durations need a unit: `{i}s` is {}, `{i}ms` is {}",
                        format_duration_ms(i * 1000),
                        format_duration_ms(*i)
                    )
                } else {
                    format!("durations need a unit, e.g. `{i}s` or `{i}ms`")
                };
                self.type_error(n, path, expected, Some(hint));
                return None;
            }
            _ => {
                self.type_error(n, path, expected, None);
                return None;
            }
        };
        if ms < 0 || (ms == 0 && !allow_zero) {
            self.error(loc, path, "must be longer than 0", None);
            return None;
        }
        Some(ms)
    }

    /// One of `valid` (a `what`, e.g. `severity`), as its index.
    pub fn enum_value(
        &mut self,
        n: &SNode,
        path: &str,
        what: &str,
        valid: &[&str],
    ) -> Option<usize> {
        let s = match &n.value {
            Node::Str(s) => s.as_str(),
            _ => {
                let expected = format!("a {what}: {}", one_of(valid));
                self.type_error(n, path, &expected, None);
                return None;
            }
        };
        if let Some(i) = valid.iter().position(|v| *v == s) {
            return Some(i);
        }
        let hint = match did_you_mean(s, valid) {
            Some(m) => format!("did you mean `{m}`?"),
            None => format!("valid values: {}", one_of(valid)),
        };
        let loc = self.loc(n);
        self.error(loc, path, format!("unknown {what} `{s}`"), Some(hint));
        None
    }
}

/// A number as written in a spec: `3`, `0.25`.
pub fn fmt_num(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        let s = format!("{v:.6}");
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}

fn duration_hint(s: &str) -> String {
    let t = s.trim();
    if t.starts_with('-') {
        return "durations cannot be negative".to_owned();
    }
    let digits: String = t
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    let unit: String = t[digits.len()..].trim().to_owned();
    let known = [
        ("ms", "ms"),
        ("msec", "ms"),
        ("millis", "ms"),
        ("sec", "s"),
        ("secs", "s"),
        ("second", "s"),
        ("seconds", "s"),
        ("min", "m"),
        ("mins", "m"),
        ("minute", "m"),
        ("minutes", "m"),
        ("hr", "h"),
        ("hrs", "h"),
        ("hour", "h"),
        ("hours", "h"),
        ("day", "d"),
        ("days", "d"),
        ("wk", "w"),
        ("week", "w"),
        ("weeks", "w"),
        ("H", "h"),
        ("S", "s"),
        ("D", "d"),
    ];
    if !digits.is_empty()
        && let Some((_, u)) = known
            .iter()
            .find(|(k, _)| *k == unit)
            .or_else(|| known.iter().find(|(k, _)| k.eq_ignore_ascii_case(&unit)))
    {
        return format!("write `{digits}{u}`");
    }
    "write a number and a unit (`ms`, `s`, `m`, `h`, `d`, `w`), e.g. `250ms`, `90s`, `15m`, `1h30m` or `28d`".to_owned()
}

/// Whether `s` is a valid name: letters, digits, `-`, `_` and `.` only.
pub fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// A hint with a valid spelling of an invalid name, when one is obvious.
fn name_hint(s: &str) -> Option<String> {
    let slug = slug(s);
    (s.is_ascii() && !slug.is_empty()).then(|| format!("e.g. `{slug}`"))
}

fn slug(s: &str) -> String {
    let mut out = String::new();
    for c in s.trim().chars() {
        if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_matches('-').to_owned()
}

/// The innermost `{` or `[` still open at `line:col` (1-based), skipping quoted text and
/// comments, as `(char, line, col)`.
fn open_bracket_before(src: &str, line: u32, col: u32) -> Option<(char, usize, usize)> {
    let mut stack: Vec<(char, usize, usize)> = Vec::new();
    for (li, text) in src.lines().enumerate() {
        let ln = li + 1;
        if ln > line as usize {
            break;
        }
        let mut quote: Option<char> = None;
        let mut prev = ' ';
        for (ci, c) in text.chars().enumerate() {
            let cn = ci + 1;
            if ln == line as usize && cn >= col as usize {
                break;
            }
            match quote {
                Some(q) if c == q => quote = None,
                Some(_) => {}
                None => match c {
                    '"' | '\'' => quote = Some(c),
                    '#' if prev.is_whitespace() => break,
                    '{' | '[' => stack.push((c, ln, cn)),
                    '}' | ']' => {
                        stack.pop();
                    }
                    _ => {}
                },
            }
            prev = c;
        }
    }
    stack.pop()
}

fn syntax_hint(message: &str, src: &str, line: u32, col: u32) -> Option<String> {
    let m = message.to_ascii_lowercase();
    if (m.contains("flow") || m.contains("bracket"))
        && let Some((c, l, cl)) = open_bracket_before(src, line, col)
    {
        let close = if c == '{' { '}' } else { ']' };
        return Some(format!(
            "the `{c}` on line {l}, column {cl} is never closed: add `{close}`"
        ));
    }
    if m.contains("tab") {
        Some("YAML indentation must use spaces, not tabs".into())
    } else if m.contains("mapping values are not allowed") {
        Some("check this line's indentation, or quote a value that contains `: `".into())
    } else if m.contains("did not find expected '-'") || m.contains("block collection") {
        Some("every item of a list must start with `- ` at the same indentation".into())
    } else if m.contains("unclosed quote") || m.contains("unterminated") {
        Some("close the quote on the same line".into())
    } else if m.contains("unclosed bracket") || m.contains("flow") {
        Some("close the `{` or `[` of this flow mapping/list".into())
    } else if m.contains("non-finite") {
        Some("`.nan` and `.inf` are not allowed here: write a finite number".into())
    } else if m.contains("duplicate") {
        Some("keep one of the two keys".into())
    } else {
        None
    }
}
