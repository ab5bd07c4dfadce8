#!/bin/sh
# Boots one board's signed image in QEMU under OVMF (KVM when /dev/kvm
# works, TCG otherwise) and waits for the appliance's ready line, at most
# the board's qemu.timeout_secs.
#
# Usage: boot-test.sh BOARD
# Inputs: APPLBUILD, APPLBUILD_OUT (see lib.sh).
# Outputs: the ready line on stdout; the last console lines on failure.
# Exit codes: 0 ready, 1 no ready line (boot failure or timeout), 2 bad board.
set -eu
# shellcheck source=ci/pipeline/lib.sh
. "$(dirname "$0")/lib.sh"

[ $# -eq 1 ] || die 2 "usage: boot-test.sh BOARD"
[ -x "$applbuild" ] || die 2 "$applbuild not found: run ci/pipeline/setup.sh first, or set APPLBUILD"
file=$(board_file "$1")
"$applbuild" run --test "$file" --out "$out"
