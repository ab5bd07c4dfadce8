#!/bin/sh
# Builds the default board into OUT_B and compares every output with the
# build already in OUT_A (or builds both when OUT_A is empty). Same inputs
# and SOURCE_DATE_EPOCH must give byte-identical files.
#
# Usage: ci/reproducible.sh OUT_A OUT_B
set -eu
cd "$(dirname "$0")/.."
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-1764806400}
a=$1
b=$2
applbuild=target/release/applbuild
[ -x "$applbuild" ] || cargo build --release --locked
if [ ! -f "$a/qemu-x86_64/1.0.0/disk.raw" ]; then
	$applbuild image boards/qemu-x86_64.toml --keys keys/test --out "$a"
fi
$applbuild image boards/qemu-x86_64.toml --keys keys/test --out "$b"
status=0
for name in disk.raw disk.bmap uki.efi roothash roothash.p7s policy.pol policy.p7s sbom.spdx.json; do
	if cmp "$a/qemu-x86_64/1.0.0/$name" "$b/qemu-x86_64/1.0.0/$name"; then
		echo "identical: $name"
	else
		echo "DIFFERENT: $name" >&2
		status=1
	fi
done
exit $status
