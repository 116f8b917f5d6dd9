//! The fuzz targets (`slawatch::fuzzing`) in `cargo test`: every committed corpus input and every
//! crash AFL++ ever found (`fuzz/corpus/<target>/`, `fuzz/regressions/<target>/`) replayed
//! through its target, then a bounded mutation run per target with proptest — corpus inputs
//! changed by bit flips, deletions, dictionary tokens (`fuzz/dict/`) and splices — so CI fuzzes
//! on the stable toolchain without an instrumented build. Long coverage-guided runs are
//! `scripts/fuzz.sh TARGET SECONDS`.
//!
//! The bounded run has a fixed seed, so CI is deterministic; `SLAWATCH_FUZZ_SEED=<n>` picks
//! another and `SLAWATCH_FUZZ_CASES=<n>` changes the cases per target (default 256).

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestCaseError, TestRunner};
use slawatch::fuzzing::TARGETS;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// The files of `dir`, in name order (none when it does not exist).
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_file())
            .collect(),
        Err(_) => Vec::new(),
    };
    out.sort();
    out
}

fn corpus(target: &str) -> Vec<Vec<u8>> {
    files(&fuzz_dir().join("corpus").join(target))
        .iter()
        .map(|p| std::fs::read(p).unwrap())
        .collect()
}

/// The tokens of an AFL++ dictionary: `"…"` per line, with `\"`, `\\` and `\xNN` escapes.
fn dictionary(target: &str) -> Vec<Vec<u8>> {
    let file = match target {
        "record" | "api_query" => format!("{target}.dict"),
        "otlp" => "record.dict".to_owned(),
        _ => "yaml.dict".to_owned(),
    };
    let text = std::fs::read_to_string(fuzz_dir().join("dict").join(file)).unwrap();
    let mut tokens = Vec::new();
    for line in text.lines() {
        let Some(body) = line.strip_prefix('"').and_then(|l| l.strip_suffix('"')) else {
            continue;
        };
        let (mut token, b) = (Vec::new(), body.as_bytes());
        let mut i = 0;
        while i < b.len() {
            match (b[i], b.get(i + 1)) {
                (b'\\', Some(b'x')) => {
                    let hex = std::str::from_utf8(&b[i + 2..i + 4]).unwrap();
                    token.push(u8::from_str_radix(hex, 16).unwrap());
                    i += 4;
                }
                (b'\\', Some(&c)) => {
                    token.push(c);
                    i += 2;
                }
                (c, _) => {
                    token.push(c);
                    i += 1;
                }
            }
        }
        tokens.push(token);
    }
    assert!(
        !tokens.is_empty(),
        "no tokens in the dictionary of {target}"
    );
    tokens
}

#[test]
fn every_committed_corpus_input_and_crash_passes_its_target() {
    let mut failures = Vec::new();
    for (name, run) in TARGETS {
        let corpus = files(&fuzz_dir().join("corpus").join(name));
        assert!(
            corpus.len() >= 5,
            "fuzz/corpus/{name} holds {} inputs; run scripts/fuzz.sh --minimise",
            corpus.len()
        );
        let crashes = files(&fuzz_dir().join("regressions").join(name));
        for path in corpus.iter().chain(&crashes) {
            let data = std::fs::read(path).unwrap();
            if let Err(e) = catch_unwind(AssertUnwindSafe(|| run(&data))) {
                let why = e
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                failures.push(format!("{}: {why}", path.display()));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// One change to an input, applied at a position taken modulo the input's length.
#[derive(Debug, Clone)]
enum Mutation {
    FlipBit(usize, u8),
    SetByte(usize, u8),
    Delete(usize, usize),
    Duplicate(usize, usize),
    InsertToken(usize, usize),
    Splice(usize, usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let at = any::<usize>();
    prop_oneof![
        (at, 0u8..8).prop_map(|(p, b)| Mutation::FlipBit(p, b)),
        (at, any::<u8>()).prop_map(|(p, b)| Mutation::SetByte(p, b)),
        (at, 1usize..64).prop_map(|(p, n)| Mutation::Delete(p, n)),
        (at, 1usize..32).prop_map(|(p, n)| Mutation::Duplicate(p, n)),
        (at, any::<usize>()).prop_map(|(p, t)| Mutation::InsertToken(p, t)),
        (at, any::<usize>(), at).prop_map(|(p, o, q)| Mutation::Splice(p, o, q)),
    ]
}

fn apply(input: &mut Vec<u8>, m: &Mutation, tokens: &[Vec<u8>], corpus: &[Vec<u8>]) {
    let pos = |p: usize, len: usize| if len == 0 { 0 } else { p % (len + 1) };
    match *m {
        Mutation::FlipBit(p, b) if !input.is_empty() => {
            let i = p % input.len();
            input[i] ^= 1 << b;
        }
        Mutation::SetByte(p, v) if !input.is_empty() => {
            let i = p % input.len();
            input[i] = v;
        }
        Mutation::Delete(p, n) => {
            let i = pos(p, input.len());
            let end = (i + n).min(input.len());
            input.drain(i..end);
        }
        Mutation::Duplicate(p, n) => {
            let i = pos(p, input.len());
            let end = (i + n).min(input.len());
            let copy = input[i..end].to_vec();
            input.splice(i..i, copy);
        }
        Mutation::InsertToken(p, t) => {
            let i = pos(p, input.len());
            input.splice(i..i, tokens[t % tokens.len()].iter().copied());
        }
        Mutation::Splice(p, o, q) => {
            // The head of this input, the tail of another.
            let other = &corpus[o % corpus.len()];
            let (i, j) = (pos(p, input.len()), pos(q, other.len()));
            input.truncate(i);
            input.extend_from_slice(&other[j..]);
        }
        _ => {}
    }
}

fn env_number(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be a number, found {v:?}")),
        Err(_) => default,
    }
}

/// Runs `target` on mutated corpus inputs; fails with the smallest input proptest finds.
fn bounded_run(target: &str) {
    let run = slawatch::fuzzing::target(target).unwrap();
    let corpus = corpus(target);
    let tokens = dictionary(target);
    let config = Config {
        cases: env_number("SLAWATCH_FUZZ_CASES", 256) as u32,
        rng_seed: RngSeed::Fixed(env_number("SLAWATCH_FUZZ_SEED", 11)),
        failure_persistence: None,
        ..Config::default()
    };
    let strategy = (0..corpus.len(), prop::collection::vec(mutation(), 1..8));
    TestRunner::new(config)
        .run(&strategy, |(seed, mutations)| {
            let mut input = corpus[seed].clone();
            for m in &mutations {
                apply(&mut input, m, &tokens, &corpus);
            }
            catch_unwind(AssertUnwindSafe(|| run(&input))).map_err(|_| {
                TestCaseError::fail(format!(
                    "{target} panicked on {:?}",
                    String::from_utf8_lossy(&input)
                ))
            })
        })
        .unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn bounded_mutation_run_record() {
    bounded_run("record");
}

#[test]
fn bounded_mutation_run_spec() {
    bounded_run("spec");
}

#[test]
fn bounded_mutation_run_policy() {
    bounded_run("policy");
}

#[test]
fn bounded_mutation_run_service_config() {
    bounded_run("service_config");
}

#[test]
fn bounded_mutation_run_api_query() {
    bounded_run("api_query");
}

#[test]
fn bounded_mutation_run_otlp() {
    bounded_run("otlp");
}
