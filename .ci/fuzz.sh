#!/usr/bin/env bash
# Runs every fuzz target (func FuzzX in a _test.go file) of every package,
# each for FUZZTIME (default 30s), FUZZJOBS (default 1) at a time. Prints a
# line per target; exits non-zero if any failed, naming the failing input
# the fuzzer wrote under the package's testdata/fuzz/ (commit it as a
# regression seed with the fix). Needs no terminal (CI=true, no stdin).
#
#   .ci/fuzz.sh                          # everything, 30s per target (make fuzz)
#   FUZZTIME=3s FUZZJOBS=2 .ci/fuzz.sh   # what make test runs
#   .ci/fuzz.sh ./transport/...          # only these packages
#
# FUZZTIME is anything -fuzztime takes (10s, 2m, 1000x). FUZZ_TIMEOUT
# (default 10m) bounds each run, as go test's -timeout does, so raise it
# with a FUZZTIME near it.
#
# FUZZMINIMIZE (default 1000x) bounds the minimizing of each new input
# (-fuzzminimizetime), interesting or failing. Go's default, 60s, let a
# run spend all its time minimizing its first new input: in 3 s runs,
# FuzzRelayForward made 20 execs and kept no new input where 1000x made
# 55,319 and kept 20 (FuzzNodeReceive 5,553 and 2, against 36,946 and 23).
# FUZZMINIMIZE=60s brings Go's default back, for a smaller failing input.
#
# Each package's instrumented test binary is built once (go test -c -fuzz)
# and run once per target, as go test -fuzz would run it: from the
# package's directory, with go test's corpus cache ($GOCACHE/fuzz/<pkg>).
# go test -fuzz takes one target per run and links the binary anew each
# time, about 1.5 s of a 3 s target on 2 cores. With FUZZJOBS=N, N targets
# run at once and share the cores, so that each run's start and stop (the
# baseline coverage, the second its coordinator takes to stop its workers)
# overlap another's fuzzing. Each then makes fewer execs: make test's 37
# targets made 0.61 of the one-at-a-time execs in 0.45 of the time
# (FUZZJOBS=2 against 1, 2 cores); make fuzz runs one at a time.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
FUZZTIME=${FUZZTIME:-30s}
FUZZ_TIMEOUT=${FUZZ_TIMEOUT:-10m}
FUZZMINIMIZE=${FUZZMINIMIZE:-1000x}
FUZZJOBS=${FUZZJOBS:-1}
case $FUZZJOBS in
'' | *[!0-9]* | 0) echo "fuzz: FUZZJOBS=$FUZZJOBS is not a number of targets at once (1, 2, …)" >&2; exit 2 ;;
esac
# Every run keeps the testing package's default workers (-test.parallel:
# GOMAXPROCS), as under go test -fuzz, even when FUZZJOBS runs share the
# cores: a run with one worker made 30-70 execs a second of
# FuzzNodeReceive where two made 800 and more (Go 1.26, 2 cores).

mod=$($GO list -m </dev/null)
cache=$($GO env GOCACHE)/fuzz
[ $# -gt 0 ] || set -- ./...
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

start=$(date +%s)
# The packages whose test files declare a fuzz target. (Only those: listing
# a package's targets runs its TestMain, which the end-to-end suite's
# should not do for nothing.)
pkgs=()
dirs=()
while read -r pkg dir; do
	if grep -qs '^func Fuzz' "$dir"/*_test.go; then
		pkgs+=("$pkg")
		dirs+=("$dir")
	fi
done < <($GO list -f '{{.ImportPath}} {{.Dir}}' "$@" </dev/null)
[ ${#pkgs[@]} -gt 0 ] || { echo "fuzz: no fuzz targets in $*" >&2; exit 1; }

# One instrumented binary per package, built one package at a time: the
# first build instruments the dependencies every later one shares, and
# two go commands at once would each compile them. Each binary lists its
# own targets.
targets=()
for i in "${!pkgs[@]}"; do
	pkg=${pkgs[$i]}
	bin=$work/$i.test
	if ! $GO test -c -fuzz . -o "$bin" "$pkg" </dev/null >"$work/build.log" 2>&1; then
		cat "$work/build.log" >&2
		echo "fuzz: building $pkg's fuzz binary failed" >&2
		exit 1
	fi
	if ! (cd "${dirs[$i]}" && "$bin" -test.list '^Fuzz') </dev/null >"$work/list.log" 2>&1; then
		cat "$work/list.log" >&2
		echo "fuzz: listing $pkg's fuzz targets failed" >&2
		exit 1
	fi
	while read -r name; do
		case $name in
		Fuzz*) targets+=("$i $name") ;;
		esac
	done <"$work/list.log"
done

# Go before 1.27 may fail a run whose -fuzztime ran out with a bare
# "context deadline exceeded" and no failing input: a race in its fuzzing
# coordinator's stop (golang.org/issue/75804), seen here on about one run
# in twenty. The target was fuzzed for all of FUZZTIME and nothing failed,
# so that run counts as passed, and says so.
stopRace() {
	awk -v t="$1" '
		$0 ~ "^--- FAIL: " t " \\(" { getline; if ($0 ~ /^ +context deadline exceeded$/) race = 1; next }
		/--- FAIL|Failing input written|seed corpus entry|panic:/ { other = 1 }
		END { exit !(race && !other) }' "$2"
}

# fuzzOne runs target number n of targets, as go test -fuzz would, into
# $work/n.log, and records its exit status and seconds taken.
fuzzOne() {
	local n=$1 i t t0 rc=0
	read -r i t <<<"${targets[$n]}"
	t0=$(date +%s)
	(cd "${dirs[$i]}" && "$work/$i.test" -test.paniconexit0 -test.run '^$' -test.fuzz "^$t\$" \
		-test.fuzztime "$FUZZTIME" -test.fuzzminimizetime "$FUZZMINIMIZE" -test.timeout "$FUZZ_TIMEOUT" \
		-test.fuzzcachedir "$cache/${pkgs[$i]}") </dev/null >"$work/$n.log" 2>&1 || rc=$?
	echo "$rc $(($(date +%s) - t0))" >"$work/$n.rc"
}

# report prints target n's line, and on failure its output and the input
# that failed.
failed=()
report() {
	local n=$1 i t rc secs rel log input seed execs
	read -r i t <<<"${targets[$n]}"
	read -r rc secs <"$work/$n.rc"
	rel=.${pkgs[$i]#"$mod"}
	log=$work/$n.log
	if [ "$rc" -eq 0 ]; then
		execs=$(grep -o 'execs: [0-9]*' "$log" | tail -n 1 || true)
		printf 'ok    %-28s %-22s %3ss  %s\n' "$rel" "$t" "$secs" "${execs:-}"
		return
	fi
	if stopRace "$t" "$log"; then
		printf 'ok    %-28s %-22s %3ss  (its stop hit golang.org/issue/75804)\n' "$rel" "$t" "$secs"
		return
	fi
	printf 'FAIL  %-28s %-22s %3ss\n' "$rel" "$t" "$secs"
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
}

# FUZZJOBS targets at a time, in rounds: every run takes FUZZTIME, so a
# round ends about when its first run does.
total=${#targets[@]}
for ((n = 0; n < total; n += FUZZJOBS)); do
	for ((m = n; m < n + FUZZJOBS && m < total; m++)); do
		fuzzOne "$m" &
	done
	wait
	for ((m = n; m < n + FUZZJOBS && m < total; m++)); do
		report "$m"
	done
done

echo "fuzz: $total targets, ${#failed[@]} failed, FUZZTIME=$FUZZTIME, FUZZJOBS=$FUZZJOBS, $(($(date +%s) - start))s"
if [ ${#failed[@]} -gt 0 ]; then
	printf '  %s\n' "${failed[@]}"
	exit 1
fi
