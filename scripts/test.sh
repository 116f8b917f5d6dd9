#!/usr/bin/env bash
# The test command (README.md): installs the test servers if missing, checks formatting, then
# builds and runs every test (unit, integration against real tansu / SMTP servers / sled on disk)
# and compiles the benches; clippy with every warning an error. Servers are started by the tests themselves on free 127.0.0.1 ports
# and stopped when each test ends.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/install-deps.sh
cargo fmt --check
cargo clippy --all-targets --locked --features failpoints -- -D warnings
cargo test --all-targets --locked --features failpoints
