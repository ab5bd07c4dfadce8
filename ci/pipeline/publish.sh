#!/bin/sh
# Copies signed builds into an artifact folder, DEST/<name>/<release>/,
# with every file of the output folder (whatever the build wrote), and
# writes DEST/<name>/<release>/SHA256SUMS, which `sha256sum -c SHA256SUMS`
# in that folder accepts. An unsigned build (one that still has
# signing-inputs/) is rejected unless APPLBUILD_PUBLISH_UNSIGNED=1, and its
# signing-inputs/ folder is never published.
#
# Usage: publish.sh DEST [BOARD...]   (default: every boards/*.toml)
# Inputs: APPLBUILD, APPLBUILD_OUT, APPLBUILD_KEYS (see lib.sh).
# Outputs: DEST/<name>/<release>/ and its SHA256SUMS; the folders on stdout.
# Exit codes: 0, 1 copying or the checksum check failed, 2 missing or
#   unsigned build, or DEST/<name>/<release> exists already.
set -eu
# shellcheck source=ci/pipeline/lib.sh
. "$(dirname "$0")/lib.sh"

[ $# -ge 1 ] || die 2 "usage: publish.sh DEST [BOARD...]"
dest=$1
shift
require_applbuild
files=$(board_files "$@")

for file in $files; do
	output=$(board_output "$file")
	name=$(basename "$(dirname "$output")")
	release=$(basename "$output")
	target=$dest/$name/$release
	[ -f "$output/disk.raw" ] || die 2 "$output/disk.raw not found: build $file first"
	if [ -d "$output/signing-inputs" ] && [ "${APPLBUILD_PUBLISH_UNSIGNED:-0}" != 1 ]; then
		die 2 "$output is unsigned: run sign.sh first, or set APPLBUILD_PUBLISH_UNSIGNED=1"
	fi
	[ ! -e "$target" ] || die 2 "$target exists already: publish into an empty folder"

	# Copy into a hidden folder beside the target, then rename, so that an
	# interrupted run leaves no half-published release.
	mkdir -p "$dest/$name"
	partial=$dest/$name/.$release.partial
	rm -rf "$partial"
	mkdir "$partial"
	(cd "$output" && find . -path ./signing-inputs -prune -o -type f -print | LC_ALL=C sort) > "$dest/$name/.$release.files"
	while IFS= read -r path; do
		mkdir -p "$partial/$(dirname "$path")"
		cp -p "$output/$path" "$partial/$path"
	done < "$dest/$name/.$release.files"
	rm "$dest/$name/.$release.files"
	write_sha256sums "$partial"
	(cd "$partial" && sha256sum -c --quiet SHA256SUMS) || die 1 "the copy in $partial does not match its SHA256SUMS"
	mv "$partial" "$target"
	echo "$target"
done
