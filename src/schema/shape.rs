//! A document format as data: every mapping's keys, each with its value type, whether it is
//! required and what it means.
//!
//! The decoders read their keys through these shapes ([`super::decoder::Ctx::fields`] reports
//! unknown keys against them; reading or requiring a key a shape does not declare panics in
//! debug builds), and [`json_schema`] turns the same shapes into the JSON Schema (draft-07)
//! that editors with a YAML language server use to complete and check files as people type.
//! So the schema cannot list a key the decoder rejects or miss one it reads, and enum values
//! are the decoder's own constants. The schema checks the shape of a document; what only the
//! decoder knows (a target that must lie below 100%, a short window shorter than the long one,
//! a receiver that must be defined) it leaves to `slawatch validate`. Pure.

use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

/// What a value may be.
#[derive(Debug, Clone, Copy)]
pub enum Ty {
    /// Text that is not blank.
    Text,
    /// A name: letters, digits, `-`, `_` and `.`.
    Name,
    /// A string, number or boolean, read as text (label values).
    Scalar,
    /// `true` or `false`.
    Bool,
    /// Any number.
    Number,
    /// A number above 0.
    Positive,
    /// A number of at least 0.
    NonNegative,
    /// A whole number of at least this.
    Uint(u64),
    /// A fraction: `99%`, or a number between 0 and 1.
    Fraction,
    /// A duration: `90s`, `15m`, `1h30m`, `28d`.
    Duration,
    /// Exactly one of these words.
    Enum(&'static [&'static str]),
    /// One of these words, or a word starting with the prefix (`attributes.<name>`).
    OpenEnum(&'static [&'static str], &'static str),
    /// Text matching this regular expression (ECMA 262, as JSON Schema has it).
    Pattern(&'static str),
    /// A list of these; a single one counts as a one-item list.
    List(&'static Ty),
    /// A list of these (written as a YAML list).
    Seq(&'static Ty),
    /// Any of these.
    AnyOf(&'static [Ty]),
    /// A mapping of this shape.
    Object(&'static Shape),
    /// A mapping of free names (labels, receivers) to values of this type.
    Map(&'static Ty),
    /// This, or an empty value.
    OrNull(&'static Ty),
}

/// One key of a mapping.
#[derive(Debug, Clone, Copy)]
pub struct Field {
    /// The key as written in YAML.
    pub key: &'static str,
    /// What its value may be.
    pub ty: Ty,
    /// Whether the mapping must have it.
    pub required: bool,
    /// What it means (the schema's `description`, shown by editors).
    pub doc: &'static str,
}

/// A required key.
pub const fn req(key: &'static str, ty: Ty, doc: &'static str) -> Field {
    Field {
        key,
        ty,
        required: true,
        doc,
    }
}

/// An optional key.
pub const fn opt(key: &'static str, ty: Ty, doc: &'static str) -> Field {
    Field {
        key,
        ty,
        required: false,
        doc,
    }
}

/// Keys accepted beyond the declared ones because they follow a pattern (`p99Usd`).
#[derive(Debug, Clone, Copy)]
pub struct PatternKeys {
    /// The keys as a regular expression, for the schema.
    pub pattern: &'static str,
    /// The same rule for the decoder.
    pub matches: fn(&str) -> bool,
    /// Their values.
    pub ty: Ty,
}

/// A mapping: its keys and what it means.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// The mapping's name in hints and in the schema's `definitions` (`window`).
    pub name: &'static str,
    /// What it is.
    pub doc: &'static str,
    /// Its keys, in the order the format reference lists them.
    pub fields: &'static [Field],
    /// Keys accepted by pattern.
    pub pattern_keys: Option<PatternKeys>,
    /// Exactly one of these keys must be present (an objective's check); empty: no such rule.
    pub exactly_one_of: &'static [&'static str],
}

/// `shape!(name, doc, [fields…])`: a [`Shape`] without pattern keys or an exactly-one rule. (A
/// macro, not a `const fn`: only a struct expression extends the field list to `'static`.)
macro_rules! shape {
    ($name:expr, $doc:expr, $fields:expr $(,)?) => {
        $crate::schema::shape::Shape {
            name: $name,
            doc: $doc,
            fields: $fields,
            pattern_keys: None,
            exactly_one_of: &[],
        }
    };
}
pub(crate) use shape;

impl Shape {
    /// The declared keys.
    pub fn keys(&self) -> Vec<&'static str> {
        self.fields.iter().map(|f| f.key).collect()
    }

    /// The field of `key`.
    pub fn field(&self, key: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.key == key)
    }

    /// Whether `key` is declared.
    pub fn declares(&self, key: &str) -> bool {
        self.field(key).is_some()
    }

    /// Whether `key` may appear: declared or matching the pattern keys.
    pub fn accepts(&self, key: &str) -> bool {
        self.declares(key) || self.pattern_keys.is_some_and(|p| (p.matches)(key))
    }
}

/// A duration's components (`parse_duration_ms`): numbers with units, or a bare `0`.
const DURATION: &str = r"\s*(0|([0-9]+(\.[0-9]+)?\s*(ms|s|m|h|d|w)\s*)+)";
/// A percentage from 0% to 100% (the decoder rejects what lies above).
const PERCENT: &str = r"^\s*[0-9]+(\.[0-9]+)?\s*%\s*$";

/// `1 per 30d`: false alarms per period.
pub const FALSE_ALARMS: &str =
    r"^\s*[0-9]+(\.[0-9]+)? per \s*(0|([0-9]+(\.[0-9]+)?\s*(ms|s|m|h|d|w)\s*)+)$";

/// The JSON Schema (draft-07) of documents whose root mapping is `root`, as pretty-printed
/// JSON text ending in a newline.
pub fn json_schema(root: &'static Shape, title: &str) -> String {
    let mut defs = BTreeMap::new();
    let mut schema = object(root, &mut defs);
    let top = schema.as_object_mut().expect("a shape is an object schema");
    let mut head = Map::new();
    head.insert(
        "$schema".into(),
        json!("http://json-schema.org/draft-07/schema#"),
    );
    head.insert("title".into(), json!(title));
    head.append(top);
    head.insert(
        "definitions".into(),
        Value::Object(defs.into_iter().collect()),
    );
    let text = serde_json::to_string_pretty(&Value::Object(head));
    text.expect("a JSON value always serializes") + "\n"
}

fn object(shape: &'static Shape, defs: &mut BTreeMap<String, Value>) -> Value {
    let mut props = Map::new();
    for f in shape.fields {
        let mut v = ty(&f.ty, defs);
        if let Ty::Object(_) = f.ty {
            // Draft-07 ignores keywords next to `$ref`: wrap it to keep the description.
            v = json!({ "allOf": [v] });
        }
        v.as_object_mut()
            .expect("every type is an object schema")
            .insert("description".into(), json!(f.doc));
        props.insert(f.key.into(), v);
    }
    let required: Vec<&str> = shape
        .fields
        .iter()
        .filter(|f| f.required)
        .map(|f| f.key)
        .collect();
    let mut out = json!({
        "type": "object",
        "description": shape.doc,
        "properties": props,
        "additionalProperties": false,
    });
    let o = out.as_object_mut().expect("built as an object");
    if !required.is_empty() {
        o.insert("required".into(), json!(required));
    }
    if let Some(p) = &shape.pattern_keys {
        o.insert(
            "patternProperties".into(),
            json!({ p.pattern: ty(&p.ty, defs) }),
        );
    }
    if !shape.exactly_one_of.is_empty() {
        let one: Vec<Value> = shape
            .exactly_one_of
            .iter()
            .map(|k| json!({ "required": [k] }))
            .collect();
        o.insert("oneOf".into(), Value::Array(one));
    }
    out
}

fn ty(t: &Ty, defs: &mut BTreeMap<String, Value>) -> Value {
    match t {
        Ty::Text => json!({ "type": "string", "pattern": r"\S" }),
        Ty::Name => json!({ "type": "string", "pattern": "^[A-Za-z0-9._-]+$" }),
        Ty::Scalar => json!({ "type": ["string", "number", "boolean"] }),
        Ty::Bool => json!({ "type": "boolean" }),
        Ty::Number => json!({ "type": "number" }),
        Ty::Positive => json!({ "type": "number", "exclusiveMinimum": 0 }),
        Ty::NonNegative => json!({ "type": "number", "minimum": 0 }),
        Ty::Uint(min) => json!({ "type": "integer", "minimum": min }),
        Ty::Fraction => json!({ "anyOf": [
            { "type": "number", "minimum": 0, "maximum": 1 },
            { "type": "string", "pattern": PERCENT },
        ] }),
        Ty::Duration => json!({ "type": "string", "pattern": format!("^{DURATION}$") }),
        Ty::Enum(values) => json!({ "enum": values }),
        Ty::OpenEnum(values, prefix) => json!({ "anyOf": [
            { "enum": values },
            { "type": "string", "pattern": format!("^{}.+$", prefix.replace('.', r"\.")) },
        ] }),
        Ty::Pattern(p) => json!({ "type": "string", "pattern": p }),
        Ty::List(item) => {
            let item = ty(item, defs);
            json!({ "anyOf": [item.clone(), { "type": "array", "items": item }] })
        }
        Ty::Seq(item) => json!({ "type": "array", "items": ty(item, defs) }),
        Ty::AnyOf(tys) => {
            json!({ "anyOf": tys.iter().map(|t| ty(t, defs)).collect::<Vec<_>>() })
        }
        Ty::Object(shape) => {
            if !defs.contains_key(shape.name) {
                // Reserve the name first: a shape is described once however often it is used.
                defs.insert(shape.name.into(), Value::Null);
                let v = object(shape, defs);
                defs.insert(shape.name.into(), v);
            }
            json!({ "$ref": format!("#/definitions/{}", shape.name) })
        }
        Ty::Map(value) => json!({ "type": "object", "additionalProperties": ty(value, defs) }),
        Ty::OrNull(inner) => json!({ "anyOf": [{ "type": "null" }, ty(inner, defs)] }),
    }
}
