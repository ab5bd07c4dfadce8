#!/bin/sh
# Prints the CI cache keys of the boards as name=value lines, the form of
# GitHub's $GITHUB_OUTPUT and GitLab's dotenv reports:
#   boards=["a","b"]                  board file stems, a JSON list for a job matrix
#   toolchain=applbuild-toolchain-X   the Debian build root (toolchain/X)
#   debs=applbuild-debs-X             package downloads of the boards' manifests
#   kernels=applbuild-kernels-X       only with --kernels: the set of kernel
#                                     cache entries the boards use
# Each X is computed from the inputs by `applbuild cache-key`, so a key
# changes exactly when what it caches would change. Boards that share a
# kernel (same source, fragments, certificate, LSM, enforce setting) count
# once in the kernels key.
#
# A kernel entry's key covers the linux-source version installed in the
# build root, so --kernels needs the build root: restore the toolchain
# cache first. When it is missing, --kernels makes it (about 1 minute and
# 2 GB, as root), which the kernel build would do anyway.
#
# Usage: cache-key.sh [--kernels] [BOARD...]   (default: every boards/*.toml)
# Inputs: APPLBUILD, APPLBUILD_KEYS, APPLBUILD_CACHE (see lib.sh).
# Outputs: the lines above on stdout; which kernel each board uses on stderr.
# Exit codes: 0, 1 making the build root failed, 2 bad board or certificate.
set -eu
# shellcheck source=ci/pipeline/lib.sh
. "$(dirname "$0")/lib.sh"

with_kernels=0
if [ "${1:-}" = --kernels ]; then
	with_kernels=1
	shift
fi
require_applbuild
files=$(board_files "$@")

# Prints the 16-hex-digit SHA-256 of stdin.
short_hash() {
	sha256sum | cut -c1-16
}

stems=""
debs=""
for file in $files; do
	stem=$(basename "$file" .toml)
	stems="$stems${stems:+,}\"$stem\""
	debs="$debs$(cache_key_value "$file" debs)
"
done
toolchain=$(cache_key_value "$file" toolchain)
echo "boards=[$stems]"
echo "toolchain=applbuild-toolchain-$toolchain"
echo "debs=applbuild-debs-$(printf '%s' "$debs" | LC_ALL=C sort -u | short_hash)"

if [ "$with_kernels" = 1 ]; then
	entries=""
	for file in $files; do
		# Makes the build root when it is missing; prints "KEY ENTRY STATE".
		"$applbuild" kernel --print-key "$file" --keys "$keys" > /dev/null
		entry=$(cache_key_value "$file" kernel)
		cached=$(cache_key_value "$file" kernel-cached)
		[ -n "$entry" ] || die 1 "applbuild cache-key printed no kernel entry for $file after the build root was made"
		echo "$file: kernel $entry (cached: $cached)" >&2
		entries="$entries$entry
"
	done
	echo "kernels=applbuild-kernels-$(printf '%s' "$entries" | LC_ALL=C sort -u | short_hash)"
fi
