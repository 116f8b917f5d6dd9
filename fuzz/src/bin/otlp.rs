//! AFL++ harness of `slawatch::fuzzing::otlp`.

fn main() {
    afl::fuzz!(|data: &[u8]| slawatch::fuzzing::otlp(data));
}
