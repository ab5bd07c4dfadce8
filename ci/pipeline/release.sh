#!/bin/sh
# The release job of one board: generates the release policy with the next
# version (`applbuild policy generate`), signs it, writes a deploy script
# and a changelog of the policy changes against the last released policy.
#
# The released policies are kept in the repository, in
# RELEASES/<name>/policy-<version>.pol (and .p7s); commit the new one there
# after each release so that the next release compares against it.
#
# The version is APPLBUILD_RELEASE (a tag such as v1.1.0 or 1.1.0), else the
# board's release. It must be newer than the last released policy, because
# the kernel rejects a policy update with a lower policy_version. The policy
# allows the root hash of this pipeline's build of the board, then the
# first APPLBUILD_KEEP_PREVIOUS (default 1) root hashes of the last
# released policy, so appliances still running that release keep working
# until they update.
#
# Usage: release.sh BOARD
# Inputs: the signed build in OUT/<name>/<board release>/; APPLBUILD_SIGNING_KEY
#   (PEM private key, as for sign.sh; `policy sign` takes no PKCS#11 URI);
#   APPLBUILD_RELEASE, APPLBUILD_KEEP_PREVIOUS, APPLBUILD_RELEASES (default:
#   releases), APPLBUILD_RELEASE_OUT (default: release); APPLBUILD,
#   APPLBUILD_OUT, APPLBUILD_KEYS (see lib.sh).
# Outputs: RELEASE_OUT/<name>/<version>/ with policy-<version>.pol, its .p7s,
#   deploy-policy-<version>.sh, CHANGELOG-policy.md and SHA256SUMS.
# Exit codes: 0, 1 a command failed, 2 no key, no build, or a version that
#   is not newer than the last released policy.
set -eu
# shellcheck source=ci/pipeline/lib.sh
. "$(dirname "$0")/lib.sh"

[ $# -eq 1 ] || die 2 "usage: release.sh BOARD"
require_applbuild
file=$(board_file "$1")
name=$(cache_key_value "$file" board)
board_release=$(cache_key_value "$file" release)
version=${APPLBUILD_RELEASE:-$board_release}
version=${version#v}
keep=${APPLBUILD_KEEP_PREVIOUS:-1}
releases=${APPLBUILD_RELEASES:-releases}/$name
build=$out/$name/$board_release
target=${APPLBUILD_RELEASE_OUT:-release}/$name/$version

[ -n "${APPLBUILD_SIGNING_KEY:-}" ] || die 2 "no signing key: set the CI secret APPLBUILD_SIGNING_KEY (PEM private key); \`applbuild policy sign\` takes no PKCS#11 URI"
[ -f "$build/roothash" ] || die 2 "$build/roothash not found: build and sign $file in this pipeline first"
[ ! -e "$target" ] || die 2 "$target exists already"
case $keep in
*[!0-9]* | "") die 2 "APPLBUILD_KEEP_PREVIOUS must be a number, got '$keep'" ;;
esac

# The last released policy: the highest version in RELEASES/<name>/.
previous=""
previous_version=""
if [ -d "$releases" ]; then
	previous_version=$(find "$releases" -maxdepth 1 -name 'policy-*.pol' | sed 's|.*/policy-||; s|\.pol$||' | sort -V | tail -n 1)
fi
if [ -n "$previous_version" ]; then
	previous=$releases/policy-$previous_version.pol
	newest=$(printf '%s\n%s\n' "$previous_version" "$version" | sort -V | tail -n 1)
	if [ "$newest" != "$version" ] || [ "$previous_version" = "$version" ]; then
		die 2 "release $version is not newer than the last released policy $previous ($previous_version): tag a higher version or raise release in $file"
	fi
fi

# This build's root hash first, then the kept ones of the last release.
hashes=$(cat "$build/roothash")
if [ -n "$previous" ] && [ "$keep" -gt 0 ]; then
	kept=$(grep -o 'dmverity_roothash=sha256:[0-9a-f]*' "$previous" | sed 's/.*://' | grep -vx "$hashes" | awk '!seen[$0]++' | head -n "$keep")
	hashes="$hashes $kept"
fi

signing_dir=""
trap 'rm -rf "$signing_dir" "${target}.partial"' EXIT
trap 'exit 1' HUP INT TERM
write_signing_key

partial=$target.partial
rm -rf "$partial"
mkdir -p "$partial"
policy=$partial/policy-$version.pol
# shellcheck disable=SC2086 # one argument per root hash
"$applbuild" policy generate "$file" --out "$out" --release "$version" --roothash $hashes --output "$policy" > /dev/null
"$applbuild" policy sign "$policy" --key "$signing_dir" > /dev/null
"$applbuild" policy deploy "$policy.p7s" --cert "$keys/cert.pem" --script "$partial/deploy-policy-$version.sh" > /dev/null

{
	echo "# Release policy of $name $version"
	echo
	if [ -n "$previous" ]; then
		echo "Changes from policy $previous_version (\`applbuild policy diff\`):"
		echo
		echo '```'
		"$applbuild" policy diff "$previous" "$policy"
		echo '```'
	else
		echo "First released policy: no earlier policy in $releases/."
		echo
		echo '```'
		cat "$policy"
		echo '```'
	fi
	echo
	echo "Deploy it to running appliances with \`deploy-policy-$version.sh\`"
	echo "(\`ssh root@appliance sh -s < deploy-policy-$version.sh\`), then commit"
	echo "policy-$version.pol and policy-$version.pol.p7s to $releases/."
} > "$partial/CHANGELOG-policy.md"

write_sha256sums "$partial"
mv "$partial" "$target"
echo "$target"
