#!/bin/sh
# Signs one board's unsigned build in place with `applbuild sign`. The key
# comes from a CI secret:
#   APPLBUILD_SIGNING_KEY  the private key as PEM (or Base64 of the PEM).
#                          It is written to a temporary folder of mode
#                          0700 (key.pem mode 0600), removed on exit, and
#                          never printed.
#   APPLBUILD_PKCS11_URI   or an RFC 7512 PKCS#11 URI of the key in an HSM,
#                          e.g. pkcs11:token=release;object=applbuild?module-path=...&pin-source=...
# With neither set it signs nothing and exits 2. Boards with
# [secure_boot] sign = true also need the Secure Boot db key:
#   APPLBUILD_DB_SIGNING_KEY  as PEM or Base64, like APPLBUILD_SIGNING_KEY
#                             (db.cert.pem must sit in APPLBUILD_KEYS), or
#   APPLBUILD_DB_PKCS11_URI   a PKCS#11 URI of the db key.
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

signing_dir=""
trap 'rm -rf "$signing_dir"' EXIT
trap 'exit 1' HUP INT TERM
if [ -n "${APPLBUILD_SIGNING_KEY:-}" ]; then
	write_signing_key
	key=$signing_dir
elif [ -n "${APPLBUILD_PKCS11_URI:-}" ]; then
	key=$APPLBUILD_PKCS11_URI
else
	die 2 "no signing key: set the CI secret APPLBUILD_SIGNING_KEY (PEM private key) or APPLBUILD_PKCS11_URI, and run this job only on protected branches"
fi
if [ -n "${APPLBUILD_DB_PKCS11_URI:-}" ]; then
	"$applbuild" sign "$output" --key "$key" --db-key "$APPLBUILD_DB_PKCS11_URI"
elif [ -n "${APPLBUILD_DB_SIGNING_KEY:-}" ]; then
	write_db_signing_key
	"$applbuild" sign "$output" --key "$key" --db-key "$signing_dir"
elif ! "$applbuild" sign "$output" --key "$key"; then
	if grep -q '"secure_boot": *true' "$output/signing-inputs/inputs.json" 2>/dev/null; then
		die 2 "this board signs its UKI for Secure Boot: set the CI secret APPLBUILD_DB_SIGNING_KEY (PEM db.key.pem) or APPLBUILD_DB_PKCS11_URI"
	fi
	exit 1
fi
