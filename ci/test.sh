#!/bin/sh
# The full test suite (the README's test command):
#   1. unit and integration tests (cargo test), with real veritysetup,
#      e2fsprogs, sgdisk, fsck.vfat and openssl;
#   2. the default board built with the committed test keys, checked with
#      the reference tools (ci/check-image.sh);
#   3. that image booted in QEMU under OVMF up to the appliance's ready line;
#   4. a second clean build compared byte for byte (reproducibility);
# and the ignored QEMU suites in between (LSM, Secure Boot, tamper matrix).
# Needs root (mmdebstrap, chroot for the kernel build) and network access to
# deb.debian.org on the first run. The kernel and build root are cached under
# ~/.cache/applbuild, so later runs take minutes.
set -eu
cd "$(dirname "$0")/.."

export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-1764806400}
work=$(mktemp -d /tmp/applbuild-test.XXXXXX)
trap 'rm -rf "$work"' EXIT

# git does not keep file modes other than the executable bit; signing
# refuses a private key readable by group or others.
chmod 600 keys/test/key.pem keys/test/db.key.pem

echo "== CI templates and pipeline scripts: actionlint, check-jsonschema, shellcheck"
ci/lint-ci.sh

echo "== cargo test"
cargo build --release --locked
cargo test --workspace --release --locked

applbuild=target/release/applbuild
echo "== applbuild image boards/qemu-x86_64.toml (test keys)"
$applbuild image boards/qemu-x86_64.toml --keys keys/test --out "$work/a"
image="$work/a/qemu-x86_64/1.0.0"

echo "== reference tools on the image"
ci/check-image.sh "$image" keys/test/cert.pem

echo "== applbuild keys check and verify on the image"
$applbuild keys check keys/test
$applbuild verify "$image" --cert keys/test/cert.pem

echo "== verify: bit flips, and image --unsigned then sign against a signed build"
cargo test --release --locked -p applbuild --test verify -- --ignored

echo "== sign an unsigned build with a key in SoftHSM2 (PKCS#11)"
cargo test --release --locked -p applbuild --test pkcs11 -- --ignored

echo "== SBOM of the default board, validated with pyspdxtools"
cargo test --release --locked -p applbuild --test sbom -- --ignored

echo "== rootfs from a directory and a tarball"
cargo test --release --locked -p applbuild --test sources -- --ignored

echo "== flash: bmaptool with disk.bmap, loop devices, refusals, qcow2 (builder/tests/flash.rs)"
cargo test --release --locked -p applbuild --test flash -- --ignored

echo "== boot in QEMU"
$applbuild run --test boards/qemu-x86_64.toml --out "$work/a"

echo "== Rust IPE LSM in QEMU: checks, self test, comparison with the C IPE"
cargo test --release --locked -p applbuild --test lsm_boot -- --ignored

echo "== UEFI Secure Boot in QEMU: signed UKI boots, changed or unsigned UKI refused"
TMPDIR="$work" cargo test --release --locked -p applbuild --test secure_boot -- --ignored --test-threads=1

echo "== tamper matrix in QEMU (builder/tests/tamper.rs)"
TMPDIR="$work" cargo test --release --locked -p applbuild --test tamper -- --ignored
echo "== the same tamper matrix on the upstream C IPE kernel"
TMPDIR="$work" APPLBUILD_TAMPER_LSM=ipe cargo test --release --locked -p applbuild --test tamper -- --ignored

echo "== the x86 box board: NVMe disk, two e1000e cards, routing through nftables (builder/tests/x86_box.rs)"
cargo test --release --locked -p applbuild --test x86_box -- --ignored

echo "== CI pipeline scripts in job order, kernel sharing across boards (builder/tests/ci_pipeline.rs)"
cargo test --release --locked -p applbuild --test ci_pipeline -- --ignored --test-threads=1

echo "== reproducibility: a second clean build"
ci/reproducible.sh "$work/a" "$work/b"
