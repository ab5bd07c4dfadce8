#!/bin/sh
# Lays the Rust IPE LSM into its own kernel source tree, then runs build.sh
# (run through chroot, for kernels with lsm = "ipe-rust").
# Inputs come from the environment, set by the builder's kernel stage:
#   SRC_TARBALL  linux-source tarball inside the root
#   SRC_DIR      the Rust IPE's source tree, unpacked once, laid into before every build
#   LSM_DIR      copy of lsm/ (kernel/ and ipe/) inside the root
#   IN_DIR       folder holding build.sh and the config fragments
# plus the inputs of build.sh.
set -eu

# The same unpack step as build-in-root.sh: the tree must exist before the
# lay-in, and build-in-root.sh stays unchanged because it is part of the C
# IPE kernel's cache key.
if [ ! -f "$SRC_DIR/.applbuild-unpacked" ]; then
	echo "applbuild: unpacking $SRC_TARBALL"
	rm -rf "$SRC_DIR"
	mkdir -p "$SRC_DIR"
	tar -xf "$SRC_TARBALL" -C "$SRC_DIR" --strip-components=1
	touch "$SRC_DIR/.applbuild-unpacked"
fi

echo "applbuild: laying the Rust IPE LSM into $SRC_DIR"
/bin/sh "$LSM_DIR/kernel/lay-in.sh" "$SRC_DIR" "$LSM_DIR/ipe/src"
exec /bin/sh "$IN_DIR/build.sh"
