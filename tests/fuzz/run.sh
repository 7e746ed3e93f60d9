#!/usr/bin/env bash
# tests/fuzz/run.sh DIR TARGET... - what `make fuzz` runs, once the targets are built.
#
# For each target (DIR/fuzz_TARGET):
#   1. replay every input in tests/fuzz/regressions/TARGET/ (no fuzzing): each
#      once crashed a target and must not any more;
#   2. fuzz for FUZZ_S seconds, starting from tests/fuzz/corpus/TARGET/ (read
#      only) and DIR/corpus/TARGET/ (what earlier runs found; new inputs go
#      there, never into the tree);
#   3. print libFuzzer's final statistics: executions, coverage (cov: edges,
#      ft: features), corpus size.
# A crash stops nothing else, but the run fails and says where the input is.
#
# Environment: FUZZ_S (seconds per target, default 60), FUZZ_JOBS (targets
# fuzzed at once, default: the number of CPUs).
set -euo pipefail

dir=${1:?usage: run.sh DIR TARGET...}
shift
secs=${FUZZ_S:-60}
jobs=${FUZZ_JOBS:-$(nproc 2>/dev/null || echo 1)}
cd "$(dirname "$0")/../.."

# Sanitizer settings of the caller (make check's log_path, ...) would hide the
# reports from the log read here; only its verdict on leak checking is kept
# (LeakSanitizer cannot run under ptrace, and make check says detect_leaks=0 then).
leaks=$(grep -oE 'detect_leaks=[01]' <<<"${ASAN_OPTIONS:-}" | tail -1 || true)
export ASAN_OPTIONS=${leaks:-detect_leaks=1}
export UBSAN_OPTIONS=print_stacktrace=1

# Longest input worth trying per target: an argv, an address, an event script.
max_len()
{
	case $1 in
	options) echo 512 ;;
	addr) echo 400 ;;
	*) echo 4096 ;;
	esac
}

failed=()
summary=()

replay()
{
	local t=$1 bin=$2 log=$3
	local inputs=(tests/fuzz/regressions/"$t"/*)

	[ -e "${inputs[0]}" ] || return 0
	if ! "$bin" "${inputs[@]}" >"$log" 2>&1; then
		tail -40 "$log"
		echo "fuzz: $t: a regression input fails again (log: $log)"
		return 1
	fi
	echo "fuzz: $t: ${#inputs[@]} regression input(s) pass"
}

fuzz_one()
{
	local t=$1 bin=$dir/fuzz_$1 work=$dir/corpus/$1 crashes=$dir/crashes/$1/
	local log=$dir/fuzz-$1.log rc=0 execs cov ft corp edges
	local args=(-max_total_time="$secs" -print_final_stats=1 -timeout=10
		-max_len="$(max_len "$t")" -artifact_prefix="$crashes")

	mkdir -p "$work" "$crashes"
	[ ! -f "tests/fuzz/$t.dict" ] || args+=(-dict="tests/fuzz/$t.dict")
	replay "$t" "$bin" "$dir/replay-$t.log" || {
		failed+=("$t (regression)")
		summary+=("$(printf '%-8s %12s %12s %8s %8s  %s' "$t" - - - - "FAILED (regression)")")
		return
	}
	echo "fuzz: $t: fuzzing for ${secs}s (log: $log)"
	timeout -k 10 $((secs + 120)) "$bin" "${args[@]}" "$work" "tests/fuzz/corpus/$t" \
		>"$log" 2>&1 || rc=$?
	execs=$(sed -nE 's/^stat::number_of_executed_units: *([0-9]+).*/\1/p' "$log")
	# The edges instrumented in the whole binary (bench.c's for options): what cov counts out of.
	edges=$(sed -nE 's/.*\(([0-9]+) inline 8-bit counters\).*/\1/p' "$log" | head -1)
	read -r cov ft corp < <(grep -E '^#[0-9]+.*cov: ' "$log" | tail -1 |
		sed -E 's/.*cov: ([0-9]+) ft: ([0-9]+) corp: ([0-9]+).*/\1 \2 \3/') || true
	summary+=("$(printf '%-8s %12s %12s %8s %8s  %s' "$t" "${execs:-?}" "${cov:-?}/${edges:-?}" \
		"${ft:-?}" "${corp:-?}" "$([ "$rc" -eq 0 ] && echo ok || echo "FAILED ($rc)")")")
	if [ "$rc" -ne 0 ]; then
		grep -E -A25 'ERROR: |runtime error|invariant broken|deadly signal' "$log" | head -50 || true
		ls -1 "$crashes" 2>/dev/null | sed "s|^|fuzz: $t: saved input: $crashes|"
		failed+=("$t")
	fi
}

# One target in a subshell: its output and its summary and failure go to
# files, so that targets can run side by side.
fuzz_to_files()
{
	local t=$1 out=$dir/run-$1
	fuzz_one "$t" >"$out.log" 2>&1
	printf '%s\n' "${summary[@]}" >"$out.summary"
	printf '%s\n' "${failed[@]}" >"$out.failed"
}

# Each libFuzzer run is one process on one CPU for FUZZ_S seconds: the
# targets run FUZZ_JOBS at a time, each still fuzzed for its FUZZ_S.
mkdir -p "$dir"
for t in "$@"; do
	while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do
		wait -n || true
	done
	fuzz_to_files "$t" &
done
wait
for t in "$@"; do
	cat "$dir/run-$t.log"
	mapfile -t -O "${#summary[@]}" summary <"$dir/run-$t.summary"
	mapfile -t lines <"$dir/run-$t.failed"
	for l in "${lines[@]}"; do
		[ -z "$l" ] || failed+=("$l")
	done
done

printf '\n%-8s %12s %12s %8s %8s  %s\n' target executions cov/edges ft corpus result
printf '%s\n' "${summary[@]}"
if [ "${#failed[@]}" -gt 0 ]; then
	echo "fuzz: FAILED: ${failed[*]}"
	echo "fuzz: reproduce with DIR/fuzz_TARGET INPUT; keep a minimized input (-minimize_crash=1)"
	echo "      in tests/fuzz/regressions/TARGET/ with the fix (see docs/fuzzing.md)"
	exit 1
fi
