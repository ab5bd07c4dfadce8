#!/bin/sh
# Builds one board twice, each time into a new empty output folder, with
# the same SOURCE_DATE_EPOCH, and compares the SHA-256 of every output
# file. build.json is compared without its stage timings (its "seconds"
# lines), which measure the build and are not outputs of it. The builds
# are unsigned, so no key is needed. Both use the same applbuild cache
# (build root, kernel, package downloads): those are inputs of the image
# build, not outputs.
#
# Usage: reproducible.sh BOARD
# Inputs: APPLBUILD, APPLBUILD_KEYS, APPLBUILD_CACHE (see lib.sh);
#   SOURCE_DATE_EPOCH (default: the commit time of HEAD).
# Outputs: "identical: N files" or the files that differ, on stdout.
# Exit codes: 0 identical, 1 a build failed or the outputs differ, 2 bad board.
set -eu
# shellcheck source=ci/pipeline/lib.sh
. "$(dirname "$0")/lib.sh"

[ $# -eq 1 ] || die 2 "usage: reproducible.sh BOARD"
require_applbuild
file=$(board_file "$1")
name=$(cache_key_value "$file" board)
release=$(cache_key_value "$file" release)
SOURCE_DATE_EPOCH=$(source_date_epoch)
export SOURCE_DATE_EPOCH

work=$(mktemp -d "${TMPDIR:-/tmp}/applbuild-reproducible.XXXXXX")
trap 'rm -rf "$work"' EXIT
trap 'exit 1' HUP INT TERM

for run in a b; do
	"$applbuild" image "$file" --unsigned --keys "$keys" --out "$work/$run" > /dev/null
	(cd "$work/$run/$name/$release" && find . -type f | LC_ALL=C sort | while IFS= read -r path; do
		case $path in
		./build.json) echo "$(sed '/^ *"seconds": /d' "$path" | sha256sum | cut -c1-64)  $path (without timings)" ;;
		*) sha256sum "$path" ;;
		esac
	done) > "$work/$run.sha256"
done

if cmp -s "$work/a.sha256" "$work/b.sha256"; then
	echo "identical: $(wc -l < "$work/a.sha256") files of $name $release (SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH)"
	exit 0
fi
echo "DIFFERENT: $name $release outputs differ between two builds (SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH):" >&2
diff "$work/a.sha256" "$work/b.sha256" >&2 || true
exit 1
