#!/bin/sh
# Builds one kernel inside the Debian build root (run through chroot).
# Inputs come from the environment, set by the builder's kernel stage:
#   SRC_TARBALL  linux-source tarball inside the root
#   SRC_DIR      where the tarball is unpacked once and then left untouched
#   IN_DIR       folder holding the config fragments (*.config), applied in name order
#   OUT_DIR      out-of-tree build folder (make O=), kept for incremental rebuilds
#   JOBS         parallel make jobs
set -eu

if [ ! -f "$SRC_DIR/.applbuild-unpacked" ]; then
	echo "applbuild: unpacking $SRC_TARBALL"
	rm -rf "$SRC_DIR"
	mkdir -p "$SRC_DIR"
	tar -xf "$SRC_TARBALL" -C "$SRC_DIR" --strip-components=1
	touch "$SRC_DIR/.applbuild-unpacked"
fi

cd "$SRC_DIR"
mkdir -p "$OUT_DIR"
make -s O="$OUT_DIR" ARCH=x86_64 tinyconfig
./scripts/kconfig/merge_config.sh -m -O "$OUT_DIR" "$OUT_DIR/.config" "$IN_DIR"/*.config >/dev/null
make -s O="$OUT_DIR" ARCH=x86_64 olddefconfig
make -s O="$OUT_DIR" ARCH=x86_64 rustavailable
make O="$OUT_DIR" ARCH=x86_64 -j"$JOBS" bzImage
