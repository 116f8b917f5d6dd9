//! The JSON Schemas of specs and policies (`slawatch schema spec|policy`, committed under
//! `schemas/`): current, accepted by an independent validator (the PyPI `jsonschema` package,
//! installed into `.tools/venv` by `scripts/install-deps.sh`) for every shipped document and
//! failing for broken ones, and listing exactly the values the decoders accept.

use serde_json::{Value, json};
use slawatch::alerts::policy::{self, parse_policy};
use slawatch::spec::decode::{DRIFT_TESTS, OBJECTIVE_KINDS, STATUSES};
use slawatch::spec::{self, Dimension, Severity, format};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// (committed file, what `slawatch schema` prints, its argument).
fn schemas() -> [(&'static str, String, &'static str); 2] {
    [
        (format::SCHEMA_FILE, format::schema(), "spec"),
        (policy::SCHEMA_FILE, policy::schema(), "policy"),
    ]
}

#[test]
fn committed_schemas_are_current() {
    let update = std::env::var_os("UPDATE_SCHEMAS").is_some_and(|v| v == "1");
    for (file, text, arg) in schemas() {
        let path = repo_root().join(file);
        if update {
            std::fs::write(&path, &text).expect("write schema");
            continue;
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == text,
            "{file} is stale: regenerate it with `cargo run -- schema {arg} > {file}` \
             (or `UPDATE_SCHEMAS=1 cargo test --test it schema`) and commit it"
        );
    }
}

/// Every YAML document of `src`, as JSON (read by serde-saphyr, not by slawatch's decoder).
fn documents(src: &str) -> Vec<Value> {
    serde_saphyr::from_multiple(src).expect("valid YAML")
}

/// The `jsonschema` package's errors for each named document.
fn validate(schema: &str, docs: &[(String, Value)]) -> Vec<(String, Vec<String>)> {
    let python = repo_root().join(".tools/venv/bin/python");
    let mut child = Command::new(&python)
        .arg(repo_root().join("scripts/check_schema.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {}: {e}; run scripts/install-deps.sh",
                python.display()
            )
        });
    let request = json!({
        "schema": serde_json::from_str::<Value>(schema).expect("the schema is JSON"),
        "documents": docs.iter().cloned().collect::<serde_json::Map<_, _>>(),
    });
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(request.to_string().as_bytes())
        .expect("write request");
    let out = child.wait_with_output().expect("validator runs");
    assert!(
        out.status.success(),
        "scripts/check_schema.py failed (is jsonschema installed? run scripts/install-deps.sh):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Map<String, Value> =
        serde_json::from_slice(&out.stdout).expect("a JSON report");
    docs.iter()
        .map(|(name, _)| {
            let errors = report[name].as_array().expect("a list of errors");
            let errors = errors.iter().map(|e| e.as_str().unwrap().to_owned());
            (name.clone(), errors.collect())
        })
        .collect()
}

fn yaml_files(dir: &str) -> Vec<(String, String)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo_root().join(dir))
        .expect("readable directory")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let name = format!("{dir}/{}", p.file_name().unwrap().to_string_lossy());
            (name, std::fs::read_to_string(&p).expect("readable file"))
        })
        .collect()
}

/// The README's complete example spec.
fn readme_example() -> String {
    let readme = std::fs::read_to_string(repo_root().join("sla-specs/README.md")).unwrap();
    let start = readme
        .find("```yaml\napiVersion")
        .expect("a complete example")
        + 8;
    let len = readme[start..].find("```").unwrap();
    readme[start..start + len].to_owned()
}

const MINIMAL_SPEC: &str = "apiVersion: slawatch/v1\nkind: AgentSLA\nmetadata: {name: s}\nspec:\n  selector: {agent: a}\n  objectives:\n";

/// Broken specs the schema must reject (each is also an error for `slawatch validate`).
const BAD_SPECS: &[(&str, &str)] = &[
    (
        "unknown key",
        "    - {name: ok, ratio: {good: {status: [success]}}, target: 99%, severity: page, colour: red}\n",
    ),
    (
        "misspelled enum",
        "    - {name: ok, ratio: {good: {status: [sucess]}}, target: 99%}\n",
    ),
    (
        "two checks",
        "    - {name: ok, ratio: {good: {status: [success]}}, rate: {of: quality.refusal, max: 3%}, target: 99%}\n",
    ),
    ("no check", "    - {name: ok, target: 99%}\n"),
    (
        "bad duration",
        "    - {name: ok, latency: {threshold: 8s}, target: 99%}\n  window: {size: 15 minutes}\n",
    ),
    (
        "wrong type",
        "    - {name: ok, tools: {maxCallsPerSession: many}}\n",
    ),
    (
        "bad name",
        "    - {name: my objective, tools: {deny: [x]}}\n",
    ),
];

#[test]
fn shipped_documents_match_the_schemas_and_broken_ones_do_not() {
    let (spec_schema, policy_schema) = (format::schema(), policy::schema());
    // Specs: every shipped file, the README's example, and the broken ones.
    let mut docs = Vec::new();
    for (name, src) in yaml_files("sla-specs") {
        let (_, diags) = spec::parse_str(&src, &name);
        assert!(!spec::has_errors(&diags), "{}", spec::render_all(&diags));
        for (i, d) in documents(&src).into_iter().enumerate() {
            docs.push((format!("{name}#{i}"), d));
        }
    }
    docs.push((
        "README example".to_owned(),
        documents(&readme_example()).remove(0),
    ));
    let good = docs.len();
    for (case, objectives) in BAD_SPECS {
        let src = format!("{MINIMAL_SPEC}{objectives}");
        let (specs, _) = spec::parse_str(&src, case);
        assert!(specs.is_empty(), "`{case}` is a valid spec");
        docs.push((case.to_string(), documents(&src).remove(0)));
    }
    let report = validate(&spec_schema, &docs);
    for (name, errors) in &report[..good] {
        assert!(
            errors.is_empty(),
            "{name} fails the spec schema: {errors:#?}"
        );
    }
    for (name, errors) in &report[good..] {
        assert!(!errors.is_empty(), "the spec schema accepts `{name}`");
    }

    // Policies: the shipped (embedded) one and a broken one.
    let shipped = std::fs::read_to_string(repo_root().join("policies/notification.yaml")).unwrap();
    assert_eq!(shipped, policy::DEFAULT_POLICY_YAML);
    let broken = shipped.replace("severity: page", "severity: pgae");
    assert!(parse_policy(&broken, "broken.yaml").0.is_none());
    let policies = vec![
        (
            "policies/notification.yaml".to_owned(),
            documents(&shipped).remove(0),
        ),
        ("broken".to_owned(), documents(&broken).remove(0)),
    ];
    let report = validate(&policy_schema, &policies);
    assert!(report[0].1.is_empty(), "{:#?}", report[0]);
    assert!(
        report[1].1.iter().any(|e| e.contains("pgae")),
        "{:#?}",
        report[1]
    );
}

fn at<'v>(v: &'v Value, pointer: &str) -> &'v Value {
    v.pointer(pointer)
        .unwrap_or_else(|| panic!("the schema has no {pointer}"))
}

fn strings(v: &Value) -> Vec<String> {
    let items = v.as_array().expect("a JSON array");
    items
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect()
}

/// Whether the decoder accepts a spec whose one objective is `objective`.
fn accepts(objective: &str) -> bool {
    let (specs, diags) = spec::parse_str(&format!("{MINIMAL_SPEC}    - {objective}\n"), "t.yaml");
    !spec::has_errors(&diags) && specs.len() == 1
}

#[test]
fn schema_enums_are_the_values_the_decoders_accept() {
    let s: Value = serde_json::from_str(&format::schema()).unwrap();
    let o = "/definitions/objective/properties";
    let dimensions = strings(at(&s, &format!("{o}/dimension/enum")));
    let severities = strings(at(&s, &format!("{o}/severity/enum")));
    let kinds: Vec<String> = at(&s, "/definitions/objective/oneOf")
        .as_array()
        .unwrap()
        .iter()
        .map(|one| at(one, "/required/0").as_str().unwrap().to_owned())
        .collect();
    let tests = strings(at(&s, "/definitions/drift/properties/test/enum"));
    let statuses = strings(at(&s, "/definitions/good/properties/status/anyOf/0/enum"));
    assert_eq!(dimensions, Dimension::NAMES);
    assert_eq!(severities, Severity::NAMES);
    assert_eq!(kinds, OBJECTIVE_KINDS);
    assert_eq!(tests, DRIFT_TESTS);
    assert_eq!(statuses, STATUSES);

    // The decoder accepts every listed value and rejects one that is not listed.
    let mean = "mean: {field: quality.score, min: 0.7}";
    for d in &dimensions {
        assert!(
            accepts(&format!("{{name: o, dimension: {d}, {mean}}}")),
            "{d}"
        );
    }
    for v in &severities {
        assert!(
            accepts(&format!("{{name: o, severity: {v}, {mean}}}")),
            "{v}"
        );
    }
    for t in &tests {
        let drift = format!("drift: {{features: [output_tokens], test: {t}}}");
        assert!(accepts(&format!("{{name: o, {drift}}}")), "{t}");
    }
    for st in &statuses {
        let ratio = format!("ratio: {{good: {{status: [{st}]}}}}, target: 99%");
        assert!(accepts(&format!("{{name: o, {ratio}}}")), "{st}");
    }
    assert!(!accepts(&format!(
        "{{name: o, dimension: latency, {mean}}}"
    )));
    assert!(!accepts(&format!(
        "{{name: o, severity: critical, {mean}}}"
    )));
    assert!(!accepts(
        "{name: o, ratio: {good: {status: [ok]}}, target: 99%}"
    ));

    // Every objective kind is a check the decoder knows: without its body it complains about
    // the body, never that the kind is unknown.
    for k in &kinds {
        let (_, diags) =
            spec::parse_str(&format!("{MINIMAL_SPEC}    - {{name: o, {k}: 5}}\n"), "t");
        assert!(
            diags.iter().all(|d| !d.message.contains("unknown key")),
            "{k}: {}",
            spec::render_all(&diags)
        );
    }

    // The policy schema lists the same severities and dimensions as the spec schema.
    let p: Value = serde_json::from_str(&policy::schema()).unwrap();
    let m = "/definitions/match/properties";
    assert_eq!(
        strings(at(&p, &format!("{m}/severity/anyOf/0/enum"))),
        severities
    );
    assert_eq!(
        strings(at(&p, &format!("{m}/dimension/anyOf/0/enum"))),
        dimensions
    );
}

#[test]
fn committed_schema_files_are_named_in_the_readme() {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    for (file, _, _) in schemas() {
        assert!(readme.contains(file), "README.md does not mention {file}");
        assert!(Path::new(&repo_root().join(file)).exists());
    }
}

#[test]
fn pii_handlings_of_the_schema_are_the_record_contract_names() {
    let names: Vec<&str> = slawatch::session::PiiHandling::ALL
        .iter()
        .map(|h| h.as_str())
        .collect();
    assert_eq!(names, slawatch::spec::decode::PII_HANDLINGS);
}
