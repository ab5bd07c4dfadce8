#!/bin/sh
# Checks a built image folder (out/<board>/<release>) with the reference
# tools: sgdisk, fsck.vfat, e2fsck, veritysetup, openssl, objdump and, where
# installed, systemd-dissect. Exits non-zero on the first failed check.
#
# Usage: ci/check-image.sh OUT_DIR CERT_PEM
set -eu

dir=$1
cert=$2
disk="$dir/disk.raw"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

pass() { echo "ok: $*"; }
fail() { echo "FAILED: $*" >&2; exit 1; }

[ -f "$disk" ] || fail "$disk is missing"
for name in uki.efi roothash roothash.p7s policy.pol policy.p7s build.json sbom.spdx.json; do
	[ -s "$dir/$name" ] || fail "$dir/$name is missing or empty"
done
roothash=$(cat "$dir/roothash")
echo "$roothash" | grep -Eq '^[0-9a-f]{64}$' || fail "roothash is not 64 lowercase hex digits: $roothash"
[ "$(wc -c < "$dir/roothash")" -eq 64 ] || fail "roothash has a trailing newline"

# GPT: primary and backup headers, entries, overlaps.
out=$(sgdisk -v "$disk" 2>&1) || fail "sgdisk -v: $out"
echo "$out" | grep -q "No problems found" || fail "sgdisk -v: $out"
pass "sgdisk -v: no problems"

# Partition N's first sector and sector count.
extract() {
	info=$(sgdisk -i "$1" "$disk")
	first=$(echo "$info" | awk '/^First sector:/ {print $3}')
	last=$(echo "$info" | awk '/^Last sector:/ {print $3}')
	dd if="$disk" of="$2" bs=512 skip="$first" count=$((last - first + 1)) status=none
}
type_of() { sgdisk -i "$1" "$disk" | awk -F': ' '/^Partition GUID code:/ {print tolower($2)}' | cut -d' ' -f1; }
uuid_of() { sgdisk -i "$1" "$disk" | awk -F': ' '/^Partition unique GUID:/ {print tolower($2)}'; }

esp=""; root=""; verity=""; sig=""
for n in 1 2 3 4 5 6; do
	case "$(type_of $n 2>/dev/null)" in
	c12a7328-f81f-11d2-ba4b-00a0c93ec93b) esp=$n ;;
	4f68bce3-e8cd-4db1-96e7-fbcaf984b709) root=$n ;;
	2c7357ed-ebd2-46d9-aec1-23d437ec2bf5) verity=$n ;;
	41092b05-9fc8-4523-994f-2def0408b176) sig=$n ;;
	esac
done
[ -n "$esp" ] && [ -n "$root" ] && [ -n "$verity" ] && [ -n "$sig" ] || fail "missing partition types: esp=$esp root=$root verity=$verity sig=$sig"
pass "partition types: esp=$esp root=$root verity=$verity sig=$sig"

expect_root=$(echo "$roothash" | cut -c1-32 | sed -E 's/(.{8})(.{4})(.{4})(.{4})(.{12})/\1-\2-\3-\4-\5/')
expect_verity=$(echo "$roothash" | cut -c33-64 | sed -E 's/(.{8})(.{4})(.{4})(.{4})(.{12})/\1-\2-\3-\4-\5/')
[ "$(uuid_of $root)" = "$expect_root" ] || fail "root partition UUID $(uuid_of $root) != $expect_root"
[ "$(uuid_of $verity)" = "$expect_verity" ] || fail "verity partition UUID $(uuid_of $verity) != $expect_verity"
pass "partition UUIDs are the halves of the root hash"

extract "$esp" "$work/esp.img"
out=$(fsck.vfat -n "$work/esp.img" 2>&1) || fail "fsck.vfat -n: $out"
echo "$out" | grep -q "FAT32" || file "$work/esp.img" | grep -q "FAT (32 bit)" || fail "ESP is not FAT32: $out"
mcopy -n -i "$work/esp.img" ::/EFI/BOOT/BOOTX64.EFI "$work/bootx64.efi" || fail "no EFI/BOOT/BOOTX64.EFI on the ESP"
cmp -s "$work/bootx64.efi" "$dir/uki.efi" || fail "BOOTX64.EFI differs from uki.efi"
pass "fsck.vfat -n clean, BOOTX64.EFI equals uki.efi"

extract "$root" "$work/root.img"
extract "$verity" "$work/verity.img"
extract "$sig" "$work/sig.img"
e2fsck -fn "$work/root.img" > "$work/e2fsck.log" 2>&1 || fail "e2fsck -fn: $(cat "$work/e2fsck.log")"
pass "e2fsck -fn clean"
veritysetup verify "$work/root.img" "$work/verity.img" "$roothash" || fail "veritysetup verify"
pass "veritysetup verify accepts the root hash"

printf %s "$roothash" > "$work/roothash.txt"
openssl smime -verify -binary -inform der -in "$dir/roothash.p7s" -content "$work/roothash.txt" \
	-certfile "$cert" -CAfile "$cert" -purpose any -out /dev/null 2> "$work/openssl.log" \
	|| fail "openssl smime -verify roothash.p7s: $(cat "$work/openssl.log")"
pass "roothash.p7s verifies against $cert"
openssl smime -verify -binary -inform der -in "$dir/policy.p7s" -CAfile "$cert" -purpose any \
	-out "$work/policy.txt" 2> "$work/openssl.log" || fail "openssl smime -verify policy.p7s: $(cat "$work/openssl.log")"
cmp -s "$work/policy.txt" "$dir/policy.pol" || fail "policy.p7s content differs from policy.pol"
grep -q "dmverity_roothash=sha256:$roothash" "$dir/policy.pol" || fail "policy.pol does not pin the root hash"
if grep -q boot_verified "$dir/policy.pol"; then fail "policy.pol contains boot_verified"; fi
pass "policy.p7s verifies, embeds policy.pol and pins the root hash"

tr -d '\000' < "$work/sig.img" > "$work/sig.json"
grep -q "\"rootHash\":\"$roothash\"" "$work/sig.json" || fail "verity-sig JSON lacks rootHash $roothash"
pass "verity-sig partition names the root hash"

sections=$(objdump -h "$dir/uki.efi")
for section in .osrel .cmdline .initrd .linux; do
	echo "$sections" | grep -q " $section " || fail "uki.efi lacks section $section"
done
pass "objdump -h: uki.efi has .osrel .cmdline .initrd .linux"

if command -v systemd-dissect > /dev/null; then
	out=$(systemd-dissect --no-pager "$disk" 2>&1) || fail "systemd-dissect: $out"
	echo "$out" | grep -qi "verity" || fail "systemd-dissect does not see verity: $out"
	pass "systemd-dissect recognises the image"
	echo "$out" | sed 's/^/    /'
else
	echo "skipped: systemd-dissect is not installed"
fi
