//! A [`Session`] in a compact binary form: what stage 1 of the `partitioned` service forwards
//! to stage 2, so a record is parsed as JSON once. Pure; never used for anything a person or
//! another program reads.
//!
//! The form is postcard over `Session`'s own serde derive, so a field added to `Session` is in
//! it without a change here. postcard does not describe itself: a reader must have the
//! writer's layout. [`layout`] fingerprints it (the encoding of a probe session with every
//! field set), writers send the fingerprint with every batch and a reader refuses a batch of
//! another layout instead of misreading it. On the sample day a session takes ~180 bytes
//! against ~570 of JSON, and decodes in a fraction of the JSON decoder's time
//! (`benches/core.rs`, `decode/binary_sample_day`).

use std::sync::OnceLock;

use crate::session::Session;

/// A session as serde sees it, with every optional field and list set. A field added to
/// `Session` that is absent here decodes as `None` (serde's rule for a missing `Option`) and
/// still changes the fingerprint: it adds at least one byte to the encoding.
const PROBE: &str = r#"{"session_id":"probe","agent":"a","prompt_version":"p","model":"m",
"provider":"v","started_at":1,"event_time":2,"duration_ms":1.5,"duration_derived":true,
"status":"error","error_type":"e","turns":3,"input_tokens":4,"output_tokens":5,"cache_read_input_tokens":9,
"cache_creation_input_tokens":10,"reasoning_output_tokens":11,"cost_usd":0.25,
"cost_derived":true,"tool_calls":[{"name":"t","status":"denied","duration_ms":2.5}],
"fallback":{"triggered":true,"kind":"k","reason":"r"},
"pii":[{"kind":"email","handling":"masked","destination":"d"}],
"quality":{"score":0.5,"resolved":true,"refusal":false},"output_chars":6,
"context_tokens_max":7,"context_utilisation":0.125,
"attributes":[["s","x"],["n",8.5],["b",true]]}"#;

/// The fingerprint of this build's binary layout of [`Session`].
pub fn layout() -> u64 {
    static LAYOUT: OnceLock<u64> = OnceLock::new();
    *LAYOUT.get_or_init(|| {
        let probe: Session = serde_json::from_str(PROBE).expect("the probe is a session");
        let mut bytes = Vec::new();
        encode(&probe, &mut bytes);
        xxhash_rust::xxh3::xxh3_64(&bytes)
    })
}

/// Appends the session's binary form to `out`.
pub fn encode(session: &Session, out: &mut Vec<u8>) {
    let taken = std::mem::take(out);
    *out = postcard::to_extend(session, taken).expect("a session always serializes");
}

/// A session from its binary form (written by a build of the same [`layout`]).
pub fn decode(bytes: &[u8]) -> Result<Session, postcard::Error> {
    postcard::from_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::catalog::Catalog;
    use crate::ingest::decode::Decoder;

    #[test]
    fn every_session_of_the_sample_day_comes_back_equal() {
        let text = include_str!("../../tests/data/sample-sessions.jsonl");
        let decoder = Decoder::new(Arc::new(Catalog::embedded()));
        let mut n = 0;
        let mut out = Vec::new();
        for line in text.lines() {
            let Ok(session) = decoder.decode(line.as_bytes()) else {
                continue;
            };
            out.clear();
            encode(&session, &mut out);
            assert!(
                out.len() < line.len(),
                "{} ≥ {} bytes",
                out.len(),
                line.len()
            );
            assert_eq!(decode(&out).unwrap(), session);
            n += 1;
        }
        assert!(n > 4_000, "{n} sessions");
    }

    #[test]
    fn the_probe_sets_every_field_and_survives_a_round_trip() {
        let probe: Session = serde_json::from_str(PROBE).unwrap();
        // Every field of the probe as serde writes it back: none missing, none null, so a
        // field added to `Session` but not to the probe shows up here.
        let back = serde_json::to_value(&probe).unwrap();
        let fields = back.as_object().unwrap();
        let unset: Vec<_> = fields
            .iter()
            .filter(|(_, v)| v.is_null())
            .map(|(k, _)| k.as_str())
            .collect();
        assert!(unset.is_empty(), "the probe leaves {unset:?} unset");
        let mut bytes = Vec::new();
        encode(&probe, &mut bytes);
        assert_eq!(decode(&bytes).unwrap(), probe);
        // Attribute values keep their kind (a binary form cannot guess it from the value).
        assert_eq!(
            serde_json::to_string(&probe.attributes).unwrap(),
            r#"[["s","x"],["n",8.5],["b",true]]"#
        );
    }

    #[test]
    fn truncated_or_foreign_bytes_are_an_error_not_a_session() {
        let probe: Session = serde_json::from_str(PROBE).unwrap();
        let mut bytes = Vec::new();
        encode(&probe, &mut bytes);
        assert!(decode(&bytes[..bytes.len() - 1]).is_err());
        assert!(decode(b"{\"session_id\":\"x\"}").is_err());
    }
}
