//! AFL++ harness of `slawatch::fuzzing::api_query`.

fn main() {
    afl::fuzz!(|data: &[u8]| slawatch::fuzzing::api_query(data));
}
