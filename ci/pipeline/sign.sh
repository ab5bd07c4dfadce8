#!/bin/sh
# Signs one board's unsigned build in place with `applbuild sign`. The key
# comes from a CI secret:
#   APPLBUILD_SIGNING_KEY  the private key as PEM (or Base64 of the PEM).
#                          It is written to a temporary folder of mode
#                          0700 (key.pem mode 0600), removed on exit, and
#                          never printed.
#   APPLBUILD_PKCS11_URI   or an RFC 7512 PKCS#11 URI of the key in an HSM,
#                          e.g. pkcs11:token=release;object=applbuild?module-path=...&pin-source=...
# With neither set it signs nothing and exits 2.
#
# Usage: sign.sh BOARD
# Inputs: the two secrets above; APPLBUILD, APPLBUILD_OUT, APPLBUILD_KEYS.
# Outputs: OUT/<name>/<release>/ signed (signing-inputs/ removed); the
#   disk image path on stdout.
# Exit codes: 0, 1 signing failed, 2 no key given or bad key or certificate.
set -eu
# shellcheck source=ci/pipeline/lib.sh
. "$(dirname "$0")/lib.sh"

[ $# -eq 1 ] || die 2 "usage: sign.sh BOARD"
require_applbuild
output=$(board_output "$1")
[ -d "$output/signing-inputs" ] || die 2 "$output is not an unsigned build (no signing-inputs/): run build.sh first"

if [ -n "${APPLBUILD_SIGNING_KEY:-}" ]; then
	signing_dir=""
	trap 'rm -rf "$signing_dir"' EXIT
	trap 'exit 1' HUP INT TERM
	write_signing_key
	"$applbuild" sign "$output" --key "$signing_dir"
elif [ -n "${APPLBUILD_PKCS11_URI:-}" ]; then
	"$applbuild" sign "$output" --key "$APPLBUILD_PKCS11_URI"
else
	die 2 "no signing key: set the CI secret APPLBUILD_SIGNING_KEY (PEM private key) or APPLBUILD_PKCS11_URI, and run this job only on protected branches"
fi
