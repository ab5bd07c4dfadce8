#!/bin/sh
# Builds the kernel of every board before the board jobs run, each distinct
# kernel once: boards with the same kernel source, fragments, certificate,
# LSM and enforce setting share one cache entry, so the second of them
# finds the first one's kernel and builds nothing.
#
# Usage: kernels.sh [BOARD...]   (default: every boards/*.toml)
# Inputs: APPLBUILD, APPLBUILD_KEYS, APPLBUILD_CACHE (see lib.sh). Runs as
#   root: a kernel build uses chroot and mount.
# Outputs: kernel entries under $APPLBUILD_CACHE/kernel; one line per board
#   on stdout: "BOARD_FILE ENTRY cached|built"; a summary on stderr.
# Exit codes: 0, 1 a kernel build failed, 2 bad board or certificate.
set -eu
# shellcheck source=ci/pipeline/lib.sh
. "$(dirname "$0")/lib.sh"

require_applbuild
files=$(board_files "$@")

boards=0
built=0
for file in $files; do
	before=$(cache_key_value "$file" kernel-cached)
	"$applbuild" kernel "$file" --keys "$keys" > /dev/null
	entry=$(cache_key_value "$file" kernel)
	state=cached
	if [ "$before" != true ]; then
		state=built
		built=$((built + 1))
	fi
	echo "$file $entry $state"
	boards=$((boards + 1))
done
board_word=boards
[ "$boards" -eq 1 ] && board_word=board
kernel_word=kernels
[ "$built" -eq 1 ] && kernel_word=kernel
echo "kernels.sh: $boards $board_word, $built $kernel_word built, the rest taken from the cache" >&2
