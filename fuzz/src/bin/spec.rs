//! AFL++ harness of `slawatch::fuzzing::spec`.

fn main() {
    afl::fuzz!(|data: &[u8]| slawatch::fuzzing::spec(data));
}
