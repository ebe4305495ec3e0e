#!/usr/bin/env bash
# Runs every fuzz target (func FuzzX in a _test.go file) of every package,
# each for FUZZTIME (default 30s), one at a time: `go test -fuzz` takes one
# target of one package per run. Prints a line per target; exits non-zero
# if any failed, naming the failing input go test wrote under the
# package's testdata/fuzz/ (commit it as a regression seed with the fix).
# Needs no terminal (CI=true, no stdin).
#
#   .ci/fuzz.sh                     # everything, 30s per target (make fuzz)
#   FUZZTIME=3s .ci/fuzz.sh         # what make test runs
#   .ci/fuzz.sh ./transport/...     # only these packages
#
# FUZZTIME is anything -fuzztime takes (10s, 2m, 1000x). go test's own
# -timeout (FUZZ_TIMEOUT, default 10m) bounds each run, so raise it with
# a FUZZTIME near it.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
FUZZTIME=${FUZZTIME:-30s}
FUZZ_TIMEOUT=${FUZZ_TIMEOUT:-10m}

mod=$($GO list -m </dev/null)
[ $# -gt 0 ] || set -- ./...
log=$(mktemp)
trap 'rm -f "$log"' EXIT

start=$(date +%s)
# The packages whose test files declare a fuzz target, listed with one go
# command so that their test binaries build in parallel. (Only those:
# `go test -list` runs a package's TestMain, which the end-to-end suite's
# should not do for nothing.)
pkgs=()
while read -r pkg dir; do
	if grep -qs '^func Fuzz' "$dir"/*_test.go; then
		pkgs+=("$pkg")
	fi
done < <($GO list -f '{{.ImportPath}} {{.Dir}}' "$@" </dev/null)
[ ${#pkgs[@]} -gt 0 ] || { echo "fuzz: no fuzz targets in $*" >&2; exit 1; }
if ! $GO test -list '^Fuzz' "${pkgs[@]}" </dev/null >"$log" 2>&1; then
	cat "$log" >&2
	echo "fuzz: listing the fuzz targets failed" >&2
	exit 1
fi
# go test prints each package's target names, then "ok <package> <time>".
targets=()
names=()
while read -r first second _; do
	case $first in
	Fuzz*) names+=("$first") ;;
	ok)
		for t in "${names[@]}"; do
			targets+=("$second $t")
		done
		names=()
		;;
	esac
done <"$log"

# Go before 1.27 may fail a run whose -fuzztime ran out with a bare
# "context deadline exceeded" and no failing input: a race in its fuzzing
# coordinator's stop (golang.org/issue/75804), seen here on about one run
# in twenty. The target was fuzzed for all of FUZZTIME and nothing failed,
# so that run counts as passed, and says so.
stopRace() {
	awk -v t="$1" '
		$0 ~ "^--- FAIL: " t " \\(" { getline; if ($0 ~ /^ +context deadline exceeded$/) race = 1; next }
		/--- FAIL|Failing input written|seed corpus entry|panic:/ { other = 1 }
		END { exit !(race && !other) }' "$log"
}

total=0
failed=()
for pt in "${targets[@]}"; do
	read -r pkg t <<<"$pt"
	rel=.${pkg#"$mod"}
	total=$((total + 1))
	t0=$(date +%s)
	if $GO test -run '^$' -fuzz "^$t\$" -fuzztime "$FUZZTIME" -timeout "$FUZZ_TIMEOUT" "$pkg" </dev/null >"$log" 2>&1; then
		execs=$(grep -o 'execs: [0-9]*' "$log" | tail -n 1 || true)
		printf 'ok    %-28s %-22s %3ss  %s\n' "$rel" "$t" "$(($(date +%s) - t0))" "${execs:-}"
		continue
	fi
	if stopRace "$t"; then
		printf 'ok    %-28s %-22s %3ss  (its stop hit golang.org/issue/75804)\n' "$rel" "$t" "$(($(date +%s) - t0))"
		continue
	fi
	printf 'FAIL  %-28s %-22s %3ss\n' "$rel" "$t" "$(($(date +%s) - t0))"
	sed 's/^/      /' "$log" | tail -n 40
	# A new failing input is written under testdata/fuzz; a failing
	# committed seed is named as FuzzX/NAME.
	input=$(sed -n 's/.*Failing input written to \(testdata\/fuzz\/[^ ]*\).*/\1/p' "$log" | head -n 1)
	seed=$(sed -n 's/.*failure while testing seed corpus entry: \(Fuzz[^ ]*\).*/\1/p' "$log" | head -n 1)
	if [ -z "$input" ] && [ -n "$seed" ] && [ -f "$rel/testdata/fuzz/$seed" ]; then
		input=testdata/fuzz/$seed
	fi
	if [ -n "$input" ]; then
		echo "      failing input: $rel/$input"
		echo "      to re-run: $GO test -run '^$t/$(basename "$input")\$' $rel"
		failed+=("$rel $t: $rel/$input")
	else
		failed+=("$rel $t (see its output above)")
	fi
done

echo "fuzz: $total targets, ${#failed[@]} failed, FUZZTIME=$FUZZTIME, $(($(date +%s) - start))s"
if [ ${#failed[@]} -gt 0 ]; then
	printf '  %s\n' "${failed[@]}"
	exit 1
fi
