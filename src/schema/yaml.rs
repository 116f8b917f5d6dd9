//! The span-carrying YAML node tree that spec and policy decoding work on.
//!
//! serde stops at the first error it meets, but `slawatch validate` must report every problem
//! in a file at once. So YAML is first read with serde-saphyr into this generic [`Node`] tree,
//! in which every value (and every mapping key) keeps the line and column it came from; a
//! format's decoder (built on [`super::decoder`]) then walks the tree and collects diagnostics.
//!
//! This module only parses YAML syntax: it knows no format and never does I/O.

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::{DuplicateKeyPolicy, Spanned};
use std::fmt;

/// A node with the position it was written at.
pub type SNode = Spanned<Node>;

/// A YAML value with no schema applied.
///
/// Child values are [`Spanned`], so every node of the tree knows where it was written.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    /// `~`, `null` or an empty value.
    Null,
    /// `true` / `false` (YAML 1.2 spellings only: `yes`/`no` stay strings).
    Bool(bool),
    /// An integer that fits `i64`.
    Int(i64),
    /// Any other number.
    Float(f64),
    /// A string scalar (plain or quoted).
    Str(String),
    /// A sequence.
    Seq(Vec<Spanned<Node>>),
    /// A mapping, in source order. Duplicate keys are kept (the decoder reports them).
    Map(Vec<(Spanned<String>, Spanned<Node>)>),
}

impl Node {
    /// What kind of value this is, for "expected X, found Y" messages (`a string`, ...).
    pub fn kind_name(&self) -> &'static str {
        match self {
            Node::Null => "an empty value",
            Node::Bool(_) => "a boolean",
            Node::Int(_) => "an integer",
            Node::Float(_) => "a number",
            Node::Str(_) => "a string",
            Node::Seq(_) => "a list",
            Node::Map(_) => "a mapping",
        }
    }

    /// The kind plus the value itself where it is short, e.g. ``a string `"15 min"` ``.
    pub fn describe(&self) -> String {
        match self {
            Node::Null => "an empty value".to_owned(),
            Node::Bool(b) => format!("boolean `{b}`"),
            Node::Int(i) => format!("integer `{i}`"),
            Node::Float(f) => format!("number `{}`", fmt_float(*f)),
            Node::Str(s) => {
                let shown: String = s.chars().take(40).collect();
                let ellipsis = if s.chars().count() > 40 { "…" } else { "" };
                format!("string `{shown:?}{ellipsis}`")
            }
            Node::Seq(_) => "a list".to_owned(),
            Node::Map(_) => "a mapping".to_owned(),
        }
    }

    /// Whether this is a scalar (not a list or mapping).
    pub fn is_scalar(&self) -> bool {
        !matches!(self, Node::Seq(_) | Node::Map(_))
    }
}

/// Formats a float the way YAML would show it (`99.5`, `1.0`, `0.001`).
pub fn fmt_float(f: f64) -> String {
    if f.fract() == 0.0 && f.abs() < 1e15 {
        format!("{f:.1}")
    } else {
        format!("{f}")
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Node, E> {
        Ok(Node::Int(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Node, E> {
        Ok(i64::try_from(v).map_or(Node::Float(v as f64), Node::Int))
    }

    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Node, E> {
        Ok(i64::try_from(v).map_or(Node::Float(v as f64), Node::Int))
    }

    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Node, E> {
        Ok(i64::try_from(v).map_or(Node::Float(v as f64), Node::Int))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Node, E> {
        Ok(Node::Float(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Node, E> {
        Ok(Node::Str(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Node, E> {
        Ok(Node::Str(v))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Node, D::Error> {
        Node::deserialize(deserializer)
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        Node::deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<Node>>()? {
            items.push(item);
        }
        Ok(Node::Seq(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Spanned<String>>()? {
            let value = map.next_value::<Spanned<Node>>()?;
            entries.push((key, value));
        }
        Ok(Node::Map(entries))
    }
}

/// A YAML syntax error, with its 1-based position (0 when unknown).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct SyntaxError {
    /// What the YAML parser said, without its own source snippet.
    pub message: String,
    /// 1-based line, 0 if unknown.
    pub line: u32,
    /// 1-based column, 0 if unknown.
    pub col: u32,
}

/// One YAML document of a file, with the line offset to add to its node positions.
#[derive(Debug, Clone)]
pub struct Document {
    /// The document's root value.
    pub root: Spanned<Node>,
    /// Lines before the chunk this document was parsed from (0 unless the file had to be
    /// split around a syntax error).
    pub line_offset: u32,
}

fn options() -> serde_saphyr::Options {
    serde_saphyr::options! {
        duplicate_keys: DuplicateKeyPolicy::PassThrough,
        strict_booleans: true,
        with_snippet: false,
    }
}

fn parse_chunk(src: &str) -> Result<Vec<Spanned<Node>>, SyntaxError> {
    serde_saphyr::from_str_multiple_with_options::<Spanned<Node>, Vec<_>>(src, options()).map_err(
        |e| {
            let (line, col) = e
                .location()
                .map_or((0, 0), |l| (clamp_u32(l.line()), clamp_u32(l.column())));
            SyntaxError {
                message: clean_message(&e.to_string()),
                line,
                col,
            }
        },
    )
}

fn clamp_u32(v: u64) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

/// Keeps the first line of serde-saphyr's message and drops its trailing " at line X column Y".
fn clean_message(msg: &str) -> String {
    let first = msg.lines().next().unwrap_or(msg).trim();
    let cut = first
        .rfind(" at line ")
        .filter(|&i| first[i..].contains("column"))
        .map_or(first, |i| &first[..i]);
    cut.trim_end_matches(':').trim().to_owned()
}

/// Parses every YAML document of `src`.
///
/// On a syntax error the file is split at `---` lines and each part is parsed on its own, so
/// that the documents before and after a broken one are still checked; every part that fails
/// contributes one [`SyntaxError`] (with positions relative to the whole file).
pub fn parse_documents(src: &str) -> (Vec<Document>, Vec<SyntaxError>) {
    let whole_err = match parse_chunk(src) {
        Ok(roots) => {
            let docs = roots
                .into_iter()
                .map(|root| Document {
                    root,
                    line_offset: 0,
                })
                .collect();
            return (docs, Vec::new());
        }
        Err(e) => e,
    };

    // Split at document markers and retry part by part.
    let mut starts = vec![0usize];
    for (i, line) in src.split_inclusive('\n').enumerate() {
        if i > 0 && (line.starts_with("---") && !line.starts_with("----")) {
            starts.push(i);
        }
    }
    if starts.len() == 1 {
        return (Vec::new(), vec![whole_err]);
    }
    let lines: Vec<&str> = src.split_inclusive('\n').collect();
    let mut docs = Vec::new();
    let mut errors = Vec::new();
    for (n, &start) in starts.iter().enumerate() {
        let end = starts.get(n + 1).copied().unwrap_or(lines.len());
        let chunk: String = lines[start..end].concat();
        let offset = clamp_u32(start as u64);
        match parse_chunk(&chunk) {
            Ok(roots) => docs.extend(roots.into_iter().map(|root| Document {
                root,
                line_offset: offset,
            })),
            Err(mut e) => {
                if e.line > 0 {
                    e.line += offset;
                }
                errors.push(e);
            }
        }
    }
    if errors.is_empty() {
        // The split hid the problem (e.g. a `---` inside a block scalar): trust the whole parse.
        return (Vec::new(), vec![whole_err]);
    }
    (docs, errors)
}
