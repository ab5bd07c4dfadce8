#!/bin/sh
# Checks one board's signed image offline with `applbuild verify` against
# the release certificate: GPT, partitions, verity tree, signatures, ESP,
# UKI and policy. With db.cert.pem in APPLBUILD_KEYS it also checks the
# UKI's Secure Boot signature. Prints one ok:/FAILED: line per check.
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
if [ -f "$keys/db.cert.pem" ]; then
	"$applbuild" verify "$output" --cert "$keys/cert.pem" --db-cert "$keys/db.cert.pem"
else
	"$applbuild" verify "$output" --cert "$keys/cert.pem"
fi
