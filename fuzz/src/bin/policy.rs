//! AFL++ harness of `slawatch::fuzzing::policy`.

fn main() {
    afl::fuzz!(|data: &[u8]| slawatch::fuzzing::policy(data));
}
