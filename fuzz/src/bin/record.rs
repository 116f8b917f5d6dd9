//! AFL++ harness of `slawatch::fuzzing::record`.

fn main() {
    afl::fuzz!(|data: &[u8]| slawatch::fuzzing::record(data));
}
