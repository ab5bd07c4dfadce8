#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-only
#
# Copies the Rust IPE LSM into a Linux 6.12 source tree:
#   security/ipe-rust/          this folder (C shim, Rust glue, Kconfig, Makefile)
#   security/ipe-rust/engine/   the policy engine's sources (lsm/ipe/src), unchanged
#   security/ipe-rust/engine_lib.rs
#                               the engine's lib.rs with its crate attributes
#                               removed and #[path] on each module, included
#                               at the glue's crate root
#   security/ipe-rust/selftest/ the engine's test vectors (tests/data), and
#   security/ipe-rust/selftest_data.rs
#                               their table, for CONFIG_SECURITY_IPE_RUST_SELFTEST
# and hooks it into security/Kconfig, security/Makefile and
# include/linux/lsm_count.h. The LSM reuses LSM_ID_IPE because it replaces
# the C IPE under the same name. Running it again on the same tree
# refreshes the copied files and leaves the edits in place.
#
# Usage: lay-in.sh SRC_DIR [ENGINE_SRC_DIR]
set -eu

usage() {
	echo "usage: $0 SRC_DIR [ENGINE_SRC_DIR]" >&2
	exit 2
}

[ $# -ge 1 ] && [ $# -le 2 ] || usage
src=$1
here=$(cd "$(dirname "$0")" && pwd)
engine=${2:-$here/../ipe/src}
engine_toml=$engine/../Cargo.toml
vectors=$engine/../tests/data

for file in security/Kconfig security/Makefile include/linux/lsm_count.h include/uapi/linux/lsm.h; do
	if [ ! -f "$src/$file" ]; then
		echo "lay-in.sh: $src/$file not found; is $src a Linux 6.12 source tree?" >&2
		exit 1
	fi
done
if [ ! -f "$engine/lib.rs" ]; then
	echo "lay-in.sh: $engine/lib.rs not found; pass the policy engine's src folder" >&2
	exit 1
fi
if ! grep -q 'LSM_ID_IPE' "$src/include/uapi/linux/lsm.h"; then
	echo "lay-in.sh: LSM_ID_IPE missing from include/uapi/linux/lsm.h; the tree predates IPE" >&2
	exit 1
fi

dest=$src/security/ipe-rust
rm -rf "$dest"
mkdir -p "$dest/engine"
for file in Kconfig Makefile ipe.h ipe.c hooks.c eval.c policy.c fs.c policy_fs.c audit.c boot_policy.S ipe_rust.rs selftest.rs; do
	cp "$here/$file" "$dest/$file"
done
cp "$engine"/*.rs "$dest/engine/"

version=$(sed -n 's/^version *= *"\(.*\)"/\1/p' "$engine_toml" | head -n 1)
{
	echo "// SPDX-License-Identifier: GPL-2.0-only"
	echo "// Written by lay-in.sh from the policy engine's lib.rs; do not edit."
	echo
	echo "/// Version of the policy engine (lsm/ipe/Cargo.toml)."
	echo "const ENGINE_VERSION: &str = \"${version:-unknown}\";"
	echo
	# Crate attributes and crate docs cannot appear in an included file.
	# Every module gets its file path, keeps the engine's no-unsafe rule
	# and may leave items unused by the kernel.
	sed -e '/^#!\[/d' -e '/^\/\/!/d' \
		-e 's|^\(pub \)\{0,1\}mod \([a-z_][a-z0-9_]*\);|#[path = "engine/\2.rs"]\n#[forbid(unsafe_code)]\n#[allow(dead_code, unreachable_pub, unused_imports)]\n\1mod \2;|' \
		"$engine/lib.rs"
} > "$dest/engine_lib.rs"

# The self test's vectors: every parse vector with its expected result and
# position, and the evaluation cases with their policies.
mkdir -p "$dest/selftest/parse" "$dest/selftest/eval"
if [ -f "$vectors/parse/expected.tsv" ] && [ -f "$vectors/eval/cases.tsv" ]; then
	cp "$vectors"/parse/* "$dest/selftest/parse/"
	cp "$vectors"/eval/* "$dest/selftest/eval/"
else
	echo "lay-in.sh: no test vectors in $vectors; the self test will run none" >&2
	: > "$dest/selftest/parse/expected.tsv"
	: > "$dest/selftest/eval/cases.tsv"
fi
{
	echo "// SPDX-License-Identifier: GPL-2.0-only"
	echo "// Written by lay-in.sh from the policy engine's tests/data; do not edit."
	echo
	echo "/// Parse vectors: file, text, expected result (\"ok\" or an errno name), line:column."
	echo "pub(crate) const PARSE_VECTORS: &[(&str, &[u8], &str, &str)] = &["
	awk -F '\t' '!/^#/ && NF >= 3 { printf "    (\"%s\", include_bytes!(\"selftest/parse/%s\"), \"%s\", \"%s\"),\n", $1, $1, $2, $3 }' \
		"$dest/selftest/parse/expected.tsv"
	echo "];"
	echo
	echo "/// Evaluation cases, one tab-separated row each."
	echo "pub(crate) const EVAL_CASES: &[u8] = include_bytes!(\"selftest/eval/cases.tsv\");"
	echo
	echo "/// The policies the evaluation cases name."
	echo "pub(crate) const EVAL_POLICIES: &[(&str, &[u8])] = &["
	for policy in "$dest"/selftest/eval/*.pol; do
		[ -f "$policy" ] || continue
		name=$(basename "$policy")
		echo "    (\"$name\", include_bytes!(\"selftest/eval/$name\")),"
	done
	echo "];"
} > "$dest/selftest_data.rs"

if ! grep -q 'security/ipe-rust/Kconfig' "$src/security/Kconfig"; then
	sed -i 's|^source "security/ipe/Kconfig"$|&\nsource "security/ipe-rust/Kconfig"|' "$src/security/Kconfig"
	grep -q 'security/ipe-rust/Kconfig' "$src/security/Kconfig" || {
		echo "lay-in.sh: could not add security/ipe-rust/Kconfig to security/Kconfig" >&2
		exit 1
	}
fi
if ! grep -q 'ipe-rust/' "$src/security/Makefile"; then
	printf 'obj-$(CONFIG_SECURITY_IPE_RUST)\t+= ipe-rust/\n' >> "$src/security/Makefile"
fi
if ! grep -q 'CONFIG_SECURITY_IPE_RUST' "$src/include/linux/lsm_count.h"; then
	sed -i 's|^#if IS_ENABLED(CONFIG_SECURITY_IPE)$|#if IS_ENABLED(CONFIG_SECURITY_IPE) \|\| IS_ENABLED(CONFIG_SECURITY_IPE_RUST)|' \
		"$src/include/linux/lsm_count.h"
	grep -q 'CONFIG_SECURITY_IPE_RUST' "$src/include/linux/lsm_count.h" || {
		echo "lay-in.sh: could not add CONFIG_SECURITY_IPE_RUST to include/linux/lsm_count.h" >&2
		exit 1
	}
fi
