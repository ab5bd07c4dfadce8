#!/bin/sh
# Builds one board's image without the private key (`applbuild image
# --unsigned`): only the release certificate is read, and sign.sh adds
# the signatures later on a protected branch.
#
# Usage: build.sh BOARD
# Inputs: APPLBUILD, APPLBUILD_OUT, APPLBUILD_KEYS, APPLBUILD_CACHE (see
#   lib.sh); SOURCE_DATE_EPOCH (default: the commit time of HEAD). Runs as
#   root (mmdebstrap, and a kernel build when the kernel is not cached).
# Outputs: OUT/<name>/<release>/ with the unsigned image and signing-inputs/;
#   the build summary (JSON, with kernel_cached) on stdout.
# Exit codes: 0, 1 the build failed, 2 bad board, manifest or certificate.
set -eu
# shellcheck source=ci/pipeline/lib.sh
. "$(dirname "$0")/lib.sh"

[ $# -eq 1 ] || die 2 "usage: build.sh BOARD"
require_applbuild
file=$(board_file "$1")
SOURCE_DATE_EPOCH=$(source_date_epoch)
export SOURCE_DATE_EPOCH

"$applbuild" --json image "$file" --unsigned --keys "$keys" --out "$out"
