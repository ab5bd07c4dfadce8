#!/bin/sh
# Shrinks the applbuild cache before a CI job saves it: removes the kernel
# build trees inside the build root (toolchain/<name>/build: unpacked
# sources and object files, about 1.5 GB per board; a later kernel build
# unpacks them again), build roots other than the current one, and kernel
# entries that none of the boards uses. Prints the size of what is left.
#
# It refuses to run unless APPLBUILD_CACHE is set, so that it never trims a
# developer's ~/.cache/applbuild by accident.
#
# Usage: cache-trim.sh [BOARD...]   (default: every boards/*.toml)
# Inputs: APPLBUILD_CACHE (required), APPLBUILD, APPLBUILD_KEYS (see lib.sh).
# Outputs: "removed: PATH" lines and the sizes of toolchain/, kernel/, debs/.
# Exit codes: 0, 1 a removal failed, 2 APPLBUILD_CACHE unset or bad board.
set -eu
# shellcheck source=ci/pipeline/lib.sh
. "$(dirname "$0")/lib.sh"

[ -n "${APPLBUILD_CACHE:-}" ] || die 2 "APPLBUILD_CACHE is unset: set it to the CI cache folder (this script deletes cache entries)"
require_applbuild
files=$(board_files "$@")
cache=$APPLBUILD_CACHE

keep=""
for file in $files; do
	toolchain=$(cache_key_value "$file" toolchain)
	entry=$(cache_key_value "$file" kernel)
	[ -n "$entry" ] || die 2 "the build root $toolchain is missing, so the kernel entries in use are unknown: run kernels.sh first"
	keep="$keep $entry $entry.log"
done
# A kernel build mounts /proc inside the build root; never delete below a mount.
cache_abs=$(cd "$cache" && pwd)
if awk -v prefix="$cache_abs/" 'index($2, prefix) == 1 { found = 1 } END { exit !found }' /proc/mounts; then
	die 1 "a file system is mounted below $cache_abs (a kernel build is running): trim after it ends"
fi

remove() {
	echo "removed: $1"
	rm -rf "$1"
}
for path in "$cache"/toolchain/*; do
	[ -e "$path" ] || continue
	if [ "$(basename "$path")" = "$toolchain" ]; then
		[ ! -e "$path/build" ] || remove "$path/build"
	else
		remove "$path"
	fi
done
for path in "$cache"/kernel/*; do
	[ -e "$path" ] || continue
	case " $keep " in
	*" $(basename "$path") "*) ;;
	*) remove "$path" ;;
	esac
done
for kind in toolchain kernel debs; do
	[ ! -d "$cache/$kind" ] || du -sh "$cache/$kind"
done
