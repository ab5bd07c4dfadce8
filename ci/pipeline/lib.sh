# Settings and helpers shared by the ci/pipeline scripts. Sourced, not run.
#
# Every script runs from the root of the repository that holds the boards
# (boards/<name>.toml) and takes these optional environment variables:
#   APPLBUILD        the applbuild binary (default: target/release/applbuild
#                    of the applbuild source tree these scripts are in,
#                    built by setup.sh)
#   APPLBUILD_OUT    output root folder (default: out)
#   APPLBUILD_KEYS   folder with the release certificate cert.pem, which
#                    the kernel trusts (default: keys/release); the private
#                    key is never read from it
#   APPLBUILD_CACHE  applbuild's cache folder (default: ~/.cache/applbuild)
# A BOARD argument is a board file (boards/x.toml) or a name (x), which
# stands for boards/x.toml.
#
# Exit codes of every script: 0 success, 1 build, check or boot failure,
# 2 usage or configuration error (missing argument, secret or file).

pipeline_dir=$(cd "$(dirname "$0")" && pwd)
applbuild_src=$(cd "$pipeline_dir/../.." && pwd)
applbuild=${APPLBUILD:-$applbuild_src/target/release/applbuild}
out=${APPLBUILD_OUT:-out}
keys=${APPLBUILD_KEYS:-keys/release}

# Prints "SCRIPT: error: MESSAGE" and exits with CODE.
die() {
	code=$1
	shift
	echo "$(basename "$0"): error: $*" >&2
	exit "$code"
}

require_applbuild() {
	[ -x "$applbuild" ] || die 2 "$applbuild not found: run ci/pipeline/setup.sh first, or set APPLBUILD"
	[ -f "$keys/cert.pem" ] || die 2 "$keys/cert.pem not found: commit the release certificate there, or set APPLBUILD_KEYS"
}

# Prints the board file of a board name or file.
board_file() {
	case $1 in
	*.toml) file=$1 ;;
	*) file=boards/$1.toml ;;
	esac
	[ -f "$file" ] || die 2 "board file $file not found"
	echo "$file"
}

# Prints the board files named by the arguments, or every boards/*.toml.
board_files() {
	if [ $# -eq 0 ]; then
		set -- boards/*.toml
		[ -f "$1" ] || die 2 "no board files in boards/"
	fi
	for board in "$@"; do
		board_file "$board"
	done
}

# Prints one value (board, release, toolchain, kernel, debs, ...) of
# `applbuild cache-key` for a board file.
# Exits the calling (sub)shell when applbuild fails, so call it in an
# assignment: value=$(cache_key_value FILE NAME).
cache_key_value() {
	lines=$("$applbuild" cache-key "$1" --keys "$keys") || exit
	printf '%s\n' "$lines" | sed -n "s/^$2=//p"
}

# Prints a board's output folder, OUT/<name>/<release>.
board_output() {
	file=$(board_file "$1")
	name=$(cache_key_value "$file" board)
	release=$(cache_key_value "$file" release)
	echo "$out/$name/$release"
}

# Prints SOURCE_DATE_EPOCH, or the commit time of HEAD when it is unset, so
# that every job of one pipeline builds with the same timestamps.
source_date_epoch() {
	if [ -n "${SOURCE_DATE_EPOCH:-}" ]; then
		echo "$SOURCE_DATE_EPOCH"
	elif epoch=$(git log -1 --format=%ct 2>/dev/null) && [ -n "$epoch" ]; then
		echo "$epoch"
	else
		die 2 "SOURCE_DATE_EPOCH is unset and git cannot read the commit time of HEAD"
	fi
}

# Writes the signing key of APPLBUILD_SIGNING_KEY (PEM, or PEM in Base64)
# with the release certificate into a new folder of mode 0700, key.pem
# mode 0600, and sets signing_dir to it. The caller removes the folder on
# exit. The key is never printed, and the variable is unset afterwards so
# that no child process inherits it.
write_signing_key() {
	make_signing_dir
	write_key_file "$APPLBUILD_SIGNING_KEY" key.pem APPLBUILD_SIGNING_KEY
	unset APPLBUILD_SIGNING_KEY
	cp "$keys/cert.pem" "$signing_dir/cert.pem"
}

# Writes the Secure Boot db key from APPLBUILD_DB_SIGNING_KEY into
# $signing_dir (made if needed) with the db certificate beside it.
write_db_signing_key() {
	[ -n "${signing_dir:-}" ] || make_signing_dir
	write_key_file "$APPLBUILD_DB_SIGNING_KEY" db.key.pem APPLBUILD_DB_SIGNING_KEY
	unset APPLBUILD_DB_SIGNING_KEY
	[ -f "$keys/db.cert.pem" ] || die 2 "$keys/db.cert.pem is missing: commit the db certificate next to cert.pem"
	cp "$keys/db.cert.pem" "$signing_dir/db.cert.pem"
}

make_signing_dir() {
	signing_dir=$(mktemp -d "${TMPDIR:-/tmp}/applbuild-key.XXXXXX")
}

# write_key_file VALUE FILE VARIABLE: writes the PEM (or Base64 of a PEM)
# private key VALUE to $signing_dir/FILE with mode 0600.
write_key_file() {
	old_umask=$(umask)
	umask 077
	# Secrets often gain a trailing newline or CRLF line ends; the PEM
	# parser rejects blank lines and carriage returns.
	case $1 in
	-----BEGIN*) printf '%s\n' "$1" | tr -d '\r' | sed '/^$/d' > "$signing_dir/$2" ;;
	*) printf '%s\n' "$1" | base64 -d 2>/dev/null | tr -d '\r' | sed '/^$/d' > "$signing_dir/$2" ;;
	esac
	grep -q '^-----BEGIN' "$signing_dir/$2" || die 2 "$3 is neither a PEM private key nor Base64 of one"
	umask "$old_umask"
}

# Writes DIR/SHA256SUMS over every file under DIR, in the form that
# `sha256sum -c SHA256SUMS` run in DIR accepts. The list is written beside
# DIR first, so that it does not list itself.
write_sha256sums() {
	(cd "$1" && find . -type f | sed 's|^\./||' | LC_ALL=C sort | xargs -d '\n' sha256sum) > "$1.sha256sums"
	mv "$1.sha256sums" "$1/SHA256SUMS"
}
