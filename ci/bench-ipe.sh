#!/bin/sh
# Times the IPE policy engine (lsm/ipe): parsing 1,000, 10,000 and 100,000
# rule policies, and decisions against a 10,000-entry root-hash allowlist
# with the digest index against the kernel's file-order scan.
#
# Usage: ci/bench-ipe.sh
# Takes about a minute with the release build. Not part of ci/test.sh: timings depend on the
# machine and its load.
set -eu
cd "$(dirname "$0")/.."
cargo run --quiet --release --locked -p ipe --features alloc --example bench
