//! Diagnostics: one problem in one file (a spec or a policy), and how it is shown to a person.
//!
//! A [`Diagnostic`] renders like a compiler message — `file:line:col: error: path: message`,
//! the offending source line with a caret under the column, and a `hint` — so that an engineer
//! can fix every problem of a spec in one pass. This module also holds the "did you mean"
//! matcher used by the decoder. It never parses YAML and never does I/O.

use std::fmt;

/// How bad a [`Diagnostic`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// A lint: the spec is valid but probably not what was meant (`--strict` makes it an error).
    Warning,
    /// The spec is invalid and is not loaded.
    Error,
}

impl Level {
    /// `error` or `warning`.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Error => "error",
            Level::Warning => "warning",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One problem found in a spec or policy file.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Level,
    /// The file, as given on the command line.
    pub file: String,
    /// 1-based line; 0 when the problem concerns the whole file (e.g. it cannot be read).
    pub line: u32,
    /// 1-based column (in characters); 0 when unknown.
    pub col: u32,
    /// Property path of the offending value, e.g. `spec.objectives[2].target` (empty for YAML
    /// syntax errors and file-level problems).
    pub path: String,
    /// What is wrong: what was expected and what was found.
    pub message: String,
    /// How to fix it, e.g. ``did you mean `allowedLateness`?``.
    pub hint: Option<String>,
    /// The source line `line` refers to, shown with a caret under `col`.
    pub source_line: Option<String>,
    /// How many characters the caret underline spans (at least 1).
    pub width: u32,
}

impl Diagnostic {
    /// Whether this diagnostic is an error (the spec it concerns is not loaded).
    pub fn is_error(&self) -> bool {
        self.severity == Level::Error
    }

    /// `file:line:col`, `file:line` or `file`, depending on what is known.
    pub fn location(&self) -> String {
        match (self.line, self.col) {
            (0, _) => self.file.clone(),
            (l, 0) => format!("{}:{l}", self.file),
            (l, c) => format!("{}:{l}:{c}", self.file),
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: ", self.location(), self.severity)?;
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)?;
        let gutter = if self.line > 0 {
            self.line.to_string().len()
        } else {
            1
        };
        let pad = " ".repeat(gutter);
        if let (Some(src), true) = (&self.source_line, self.line > 0) {
            let src = src.replace('\t', " ");
            let src = src.trim_end();
            write!(f, "\n{pad} |\n{} | {src}", self.line)?;
            if self.col > 0 {
                let col = self.col as usize;
                let before = col - 1;
                let line_len = src.chars().count();
                let avail = line_len.saturating_sub(before).max(1);
                let width = (self.width.max(1) as usize).min(avail);
                write!(f, "\n{pad} | {}{}", " ".repeat(before), "^".repeat(width))?;
            }
        }
        if let Some(hint) = &self.hint {
            write!(f, "\n{pad} = hint: {hint}")?;
        }
        Ok(())
    }
}

/// Turns every warning into an error (`slawatch validate --strict`).
pub fn make_strict(diags: &mut [Diagnostic]) {
    for d in diags {
        d.severity = Level::Error;
    }
}

/// Whether any diagnostic is an error.
pub fn has_errors(diags: &[Diagnostic]) -> bool {
    diags.iter().any(Diagnostic::is_error)
}

/// A one-line tally such as `3 errors, 1 warning` (or `no problems`).
pub fn summary(diags: &[Diagnostic]) -> String {
    let errors = diags.iter().filter(|d| d.is_error()).count();
    let warnings = diags.len() - errors;
    let plural = |n: usize, word: &str| {
        if n == 1 {
            format!("1 {word}")
        } else {
            format!("{n} {word}s")
        }
    };
    match (errors, warnings) {
        (0, 0) => "no problems".to_owned(),
        (e, 0) => plural(e, "error"),
        (0, w) => plural(w, "warning"),
        (e, w) => format!("{}, {}", plural(e, "error"), plural(w, "warning")),
    }
}

/// Renders all diagnostics, each followed by a blank line (print [`summary`] after it).
pub fn render_all(diags: &[Diagnostic]) -> String {
    let mut out = String::new();
    for d in diags {
        out.push_str(&d.to_string());
        out.push_str("\n\n");
    }
    out
}

fn normalize(s: &str) -> String {
    s.chars()
        .filter(|c| !matches!(c, '_' | '-' | ' '))
        .flat_map(char::to_lowercase)
        .collect()
}

/// Optimal-string-alignment distance (Levenshtein plus adjacent transpositions).
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let (n, m) = (a.len(), b.len());
    let mut d = vec![vec![0usize; m + 1]; n + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=n {
        for j in 1..=m {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = v;
        }
    }
    d[n][m]
}

/// The candidate closest to `word`, if one is close enough to be a plausible typo.
///
/// Case, `_` and `-` are ignored first (`allowed_lateness` finds `allowedLateness`); then the
/// edit distance must be at most a third of the candidate's length (at least 1).
pub fn did_you_mean<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let w = normalize(word);
    if w.is_empty() {
        return None;
    }
    let mut best: Option<(usize, &'a str)> = None;
    for &c in candidates {
        let n = normalize(c);
        let dist = edit_distance(&w, &n);
        let limit = (n.chars().count() / 3).max(1);
        if dist <= limit && best.is_none_or(|(b, _)| dist < b) {
            best = Some((dist, c));
        }
    }
    best.map(|(_, c)| c)
}

/// `` `a`, `b` or `c` `` — a human list of valid values.
pub fn one_of(values: &[&str]) -> String {
    let quoted: Vec<String> = values.iter().map(|v| format!("`{v}`")).collect();
    match quoted.len() {
        0 => String::new(),
        1 => quoted[0].clone(),
        n => format!("{} or {}", quoted[..n - 1].join(", "), quoted[n - 1]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions() {
        let keys = ["size", "step", "allowedLateness", "latePolicy"];
        assert_eq!(
            did_you_mean("allowedLatness", &keys),
            Some("allowedLateness")
        );
        assert_eq!(
            did_you_mean("allowed_lateness", &keys),
            Some("allowedLateness")
        );
        assert_eq!(did_you_mean("stpe", &keys), Some("step"));
        assert_eq!(did_you_mean("colour", &keys), None);
    }

    #[test]
    fn lists() {
        assert_eq!(one_of(&["a"]), "`a`");
        assert_eq!(one_of(&["a", "b", "c"]), "`a`, `b` or `c`");
    }
}
