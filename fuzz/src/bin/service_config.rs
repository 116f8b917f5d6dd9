//! AFL++ harness of `slawatch::fuzzing::service_config`.

fn main() {
    afl::fuzz!(|data: &[u8]| slawatch::fuzzing::service_config(data));
}
