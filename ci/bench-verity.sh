#!/bin/bash
# Times applbuild's dm-verity format against `veritysetup format` on a random
# data file (1 GiB unless SIZE_MIB is set) and prints min and median wall
# times and the ratio veritysetup / applbuild. Both tools get the same salt
# and UUID. The two commands run in turn (A B A B ...) after one untimed
# run each, which also fills the page cache and checks that both write the
# same hash image and root hash. veritysetup fsyncs its hash file and
# applbuild does not. With the data file written out first, that fsync took
# 5-12 ms per run under strace on the machine in docs/benchmarks.md.
#
# Usage: ci/bench-verity.sh            (RUNS=7 SIZE_MIB=1024 by default)
# Needs veritysetup (cryptsetup-bin), cargo and about 1 GiB free in /tmp.
# Not part of ci/test.sh: timings depend on the machine and its load.
set -euo pipefail
cd "$(dirname "$0")/.."

runs=${RUNS:-7}
size_mib=${SIZE_MIB:-1024}

command -v veritysetup > /dev/null || {
	echo "veritysetup not found: install cryptsetup-bin (apt-get install cryptsetup-bin)" >&2
	exit 1
}

cargo build --release --locked -p applbuild --example verity_format
ours=target/release/examples/verity_format

work=$(mktemp -d /tmp/bench-verity.XXXXXX)
trap 'rm -rf "$work"' EXIT
data="$work/data.img"
head -c $((size_mib << 20)) /dev/urandom > "$data"
# Write the new file out now. Otherwise its writeback runs during the timed
# runs, and veritysetup's fsync of the hash file waits for it.
sync "$data"
salt=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
uuid=12345678-1234-5678-9abc-def012345678

ours_cmd=("$ours" "$data" "$work/ours.hash" "$salt" "$uuid")
theirs_cmd=(veritysetup format "--salt=$salt" "--uuid=$uuid" "$data" "$work/theirs.hash")

# Untimed runs: page cache warm-up and an equality check.
ours_root=$("${ours_cmd[@]}" | sed -n 's/^Root hash:[[:space:]]*//p')
theirs_root=$("${theirs_cmd[@]}" | sed -n 's/^Root hash:[[:space:]]*//p')
if [ "$ours_root" != "$theirs_root" ]; then
	echo "root hashes differ: applbuild $ours_root, veritysetup $theirs_root" >&2
	exit 1
fi
cmp "$work/ours.hash" "$work/theirs.hash"

# Prints the wall time of one run of "$@" in seconds.
time_run() {
	local start=$EPOCHREALTIME
	"$@" > /dev/null
	local end=$EPOCHREALTIME
	awk -v s="$start" -v e="$end" 'BEGIN { printf "%.4f\n", e - s }'
}

ours_times=()
theirs_times=()
for _ in $(seq "$runs"); do
	ours_times+=("$(time_run "${ours_cmd[@]}")")
	theirs_times+=("$(time_run "${theirs_cmd[@]}")")
done

# Prints "min median" of its arguments.
min_median() {
	printf '%s\n' "$@" | sort -g | awk '{ t[NR] = $1 } END {
		m = (NR % 2) ? t[(NR + 1) / 2] : (t[NR / 2] + t[NR / 2 + 1]) / 2
		printf "%.3f %.3f\n", t[1], m
	}'
}

read -r ours_min ours_median <<< "$(min_median "${ours_times[@]}")"
read -r theirs_min theirs_median <<< "$(min_median "${theirs_times[@]}")"
echo "data: ${size_mib} MiB, $runs runs each, $(nproc) cores"
echo "applbuild verity_format: min ${ours_min} s, median ${ours_median} s"
echo "veritysetup format:      min ${theirs_min} s, median ${theirs_median} s"
awk -v t="$theirs_median" -v o="$ours_median" 'BEGIN { printf "ratio veritysetup / applbuild (medians): %.2f\n", t / o }'
