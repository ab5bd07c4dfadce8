#!/bin/sh
# Prepares a CI machine for the other ci/pipeline scripts: installs the
# Debian packages that applbuild needs (the list of .ci/run, as root), then
# builds applbuild in release mode.
#
# Usage: setup.sh
# Inputs: Debian 12 or 13 as root with cargo on PATH (the rust:1-bookworm
#   image has it); APPLBUILD_SKIP_PACKAGES=1 skips the package step;
#   APPLBUILD set to a built binary skips the build.
# Outputs: the binary in <applbuild source>/target/release/applbuild.
# Exit codes: 0 ready, 1 an install or the build failed, 2 cargo missing.
set -eu
# shellcheck source=ci/pipeline/lib.sh
. "$(dirname "$0")/lib.sh"

command -v cargo > /dev/null || die 2 "cargo not found: use a Rust image (rust:1-bookworm) or install Rust with rustup"
if [ "${APPLBUILD_SKIP_PACKAGES:-0}" != 1 ]; then
	"$applbuild_src/.ci/run" --install-only
fi
if [ -z "${APPLBUILD:-}" ]; then
	cargo build --release --locked --manifest-path "$applbuild_src/Cargo.toml"
fi
"$applbuild" --version
