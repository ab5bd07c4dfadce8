#!/bin/sh
# Checks one board's signed image offline with `applbuild verify` against
# the release certificate: GPT, partitions, verity tree, signatures, ESP,
# UKI and policy. Prints one ok:/FAILED: line per check.
#
# Usage: verify.sh BOARD
# Inputs: APPLBUILD, APPLBUILD_OUT, APPLBUILD_KEYS (see lib.sh).
# Exit codes: 0 every check passed, 1 a check failed, 2 bad board or certificate.
set -eu
# shellcheck source=ci/pipeline/lib.sh
. "$(dirname "$0")/lib.sh"

[ $# -eq 1 ] || die 2 "usage: verify.sh BOARD"
require_applbuild
output=$(board_output "$1")
"$applbuild" verify "$output" --cert "$keys/cert.pem"
