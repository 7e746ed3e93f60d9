#!/usr/bin/env bash
# tests/check.sh - everything `make check` does, in order, stopping at the first failure.
#
#   1. install the build and test dependencies when they are missing
#      (scripts/install-deps.sh check: root only; otherwise it prints the
#      apt-get command and we stop)
#   2. build with gcc, and with clang in build-clang/: -Werror must hold on both;
#      the gcc build must have the uring engine wherever liburing and the
#      kernel allow it
#   3. unit tests (cmocka), the end-to-end suite (pytest) and a short soak
#      (tests/soak/soak.py, CHECK_SOAK_S seconds per engine) on the plain build
#   4. a build without liburing (build-nouring/): the unit tests of the code
#      that liburing changes (liburing_units), the end-to-end
#      suite on epoll and on whatever auto picks, and the build-configuration
#      tests (tests/build/: a tree built before liburing was installed)
#   5. ASan+UBSan build: unit tests, then the end-to-end suite on every model
#   6. TSan build: the end-to-end suite on the models that use threads,
#      less the tests marked no_threads (no process of theirs starts a thread)
#
# Environment (all optional):
#   ECHOD_MODELS   models for the end-to-end runs (default: conftest.py's, i.e. all)
#   CHECK_JOBS     parallel make jobs (default: number of CPUs)
#   CHECK_FUZZ_S   seconds of fuzzing per libFuzzer target (default 10)
#   CHECK_E2E_JOBS test files run at once in an end-to-end step (pytest-xdist;
#                  default: CPUs + 1; 1 runs them one after the other)
#   PYTHON         interpreter with pytest (default /usr/bin/python3: Debian's
#                  python3-pytest; a pyenv python3 first on PATH may lack pytest)
set -eEuo pipefail

# The models ThreadSanitizer checks: every engine that runs threads.
TSAN_MODELS="threads epoll uring"

# The Debian packages are listed in scripts/install-deps.sh (BUILD_PACKAGES,
# TEST_PACKAGES), which `make run` uses too.

# Time limits, in seconds.  `make check` as a whole must stay under 20 minutes
# on a 2-CPU machine; these only stop a step that hangs.
BUILD_TIMEOUT=600
UNIT_TIMEOUT=300
E2E_TIMEOUT=900
TEST_TIMEOUT=120 # any single end-to-end test

cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-/usr/bin/python3}
JOBS=${CHECK_JOBS:-$(nproc 2>/dev/null || echo 2)}
# An end-to-end test spends most of its time waiting (for a timeout, a grace
# period, a silence it measures, a server starting): the plain suite used 76 s
# of CPU in 274 s.  So the test files are spread over CPUs + 1 pytest
# processes (pytest-xdist), each file's tests in order on one of them
# (--dist loadfile: a file's tests never run beside each other).
E2E_JOBS=${CHECK_E2E_JOBS:-$((JOBS + 1))}
LOGDIR=build/check-logs
# Options of the parent make (a jobserver it did not share, -k, ...) must not leak
# into the builds below; variables given to `make check` are in the environment.
unset MAKEFLAGS MFLAGS MAKELEVEL

STEPS=()
PASSED=0
FAILED=0
SKIPPED=0

step()
{
	printf '\n======== %s ========\n' "$*"
	STEP_NAME=$*
	STEP_START=$SECONDS
}

step_done()
{
	STEPS+=("$(printf '%5ss  %s' $((SECONDS - STEP_START)) "$STEP_NAME")")
}

die()
{
	printf '\nmake check: FAILED: %s\n' "$*" >&2
	exit 1
}
trap 'printf "\nmake check: FAILED in step: %s\n" "${STEP_NAME:-setup}" >&2' ERR

# run SECONDS CMD...: runs CMD with a time limit; a hang is reported as such.
run()
{
	local limit=$1 rc=0
	shift
	timeout -k 10 "$limit" "$@" || rc=$?
	if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
		die "$STEP_NAME: timed out after ${limit}s: $*"
	fi
	return "$rc"
}

# ---------------------------------------------------------------------------
# Dependencies.

install_deps()
{
	step "dependencies"
	run 1600 sh scripts/install-deps.sh check </dev/null || die "missing dependencies (see above)"
	step_done
}

# ---------------------------------------------------------------------------
# Is the uring engine in the main build?  Where liburing is installed and the
# kernel runs io_uring, a build without it would skip every uring test and
# still pass: that fails here instead.

# The first line echod -m uring prints: "listening on ..." or why it cannot run.
uring_start_line()
{
	local echod=$1 out pid i
	out=$(probe_dir)/uring-start.txt
	: >"$out"
	"$echod" -m uring -q -l 127.0.0.1:0 </dev/null >/dev/null 2>"$out" &
	pid=$!
	# Polls for the line, 10 s at most; echod exits at once when it cannot start.
	for ((i = 0; i < 100; i++)); do
		if [ -s "$out" ] || ! kill -0 "$pid" 2>/dev/null; then
			break
		fi
		sleep 0.1
	done
	kill "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	head -n 1 "$out"
}

# Exit status 0 when a program linked with liburing can set up a ring here.
kernel_runs_io_uring()
{
	local d
	d=$(probe_dir)
	printf '#include <liburing.h>\nint main(void){struct io_uring r;\nreturn io_uring_queue_init(8, &r, 0) < 0;}\n' |
		"${CC:-cc}" -x c - -luring -o "$d/uring" 2>/dev/null || return 2
	"$d/uring"
}

# check_uring_built DIR: fails when DIR/echod lacks uring though it could have it.
check_uring_built()
{
	local dir=$1 line rc=0
	[ -x "$dir/echod" ] || die "no $dir/echod"
	line=$(uring_start_line "$dir/echod")
	case $line in
	*"listening on"*)
		echo "$dir/echod runs the uring engine"
		return
		;;
	*"built without liburing"*) ;;
	*)
		echo "uring unavailable here (its tests skip): $line"
		return
		;;
	esac
	kernel_runs_io_uring || rc=$?
	case $rc in
	0) die "$dir/echod was built without liburing, yet liburing is installed and this kernel runs io_uring: the uring tests would all skip ($dir/config says how the tree was configured)" ;;
	2) echo "liburing is not installed: $dir/echod has no uring engine and its tests skip" ;;
	*) echo "this kernel (or a seccomp filter) refuses io_uring: its tests skip" ;;
	esac
}

# ---------------------------------------------------------------------------
# Sanitizer runtime checks: a sanitizer that cannot run here must say so
# loudly rather than let the suite pass without it.

probe_dir()
{
	mkdir -p build/check-probe
	echo build/check-probe
}

# LeakSanitizer stops itself under ptrace (strace, gdb, some sandboxes): then
# leaks go unchecked, which we say, while every other ASan check still runs.
probe_lsan()
{
	local d out
	d=$(probe_dir)
	printf '#include <stdlib.h>\nvoid *volatile p;\nint main(void){p = malloc(33); p = 0; return 0;}\n' |
		"${CC:-cc}" -fsanitize=address -g -x c - -o "$d/lsan" || die "cannot build with -fsanitize=address"
	out=$(ASAN_OPTIONS=detect_leaks=1 "$d/lsan" 2>&1) && true
	if grep -q 'detected memory leaks' <<<"$out"; then
		LEAKS=1
		echo "LeakSanitizer works: leaks are checked"
	else
		LEAKS=0
		echo "WARNING: LeakSanitizer does not work here (ptrace?); leaks are NOT checked:"
		echo "$out" | head -3
	fi
}

# ThreadSanitizer maps its shadow memory at fixed addresses.  Kernels with
# more ASLR entropy (vm.mmap_rnd_bits above 28, the default of recent Ubuntu
# and Fedora kernels) can place a library there, and TSan dies at start with
# "FATAL: ThreadSanitizer: unexpected memory mapping".  Fixes, in order of
# preference: run without ASLR (setarch -R, which only affects our processes),
# or, as root, lower vm.mmap_rnd_bits to 28 for the run and restore it after.
TSAN_PREFIX=()
RND_BITS_SAVED=

restore_rnd_bits()
{
	if [ -n "$RND_BITS_SAVED" ]; then
		echo "$RND_BITS_SAVED" >/proc/sys/vm/mmap_rnd_bits || true
		echo "vm.mmap_rnd_bits restored to $RND_BITS_SAVED"
		RND_BITS_SAVED=
	fi
}
trap restore_rnd_bits EXIT

probe_tsan()
{
	local d
	d=$(probe_dir)
	printf '#include <pthread.h>\nstatic int x;\nstatic void *f(void *a){(void)a; __atomic_add_fetch(&x, 1, __ATOMIC_SEQ_CST); return 0;}\nint main(void){pthread_t t; if (pthread_create(&t, 0, f, 0)) return 1; pthread_join(t, 0); return x != 1;}\n' |
		"${CC:-cc}" -fsanitize=thread -pthread -g -x c - -o "$d/tsan" || die "cannot build with -fsanitize=thread"
	if "$d/tsan" >"$d/tsan.out" 2>&1; then
		echo "ThreadSanitizer works as is"
		return
	fi
	head -3 "$d/tsan.out" || true
	if setarch "$(uname -m)" -R "$d/tsan" >/dev/null 2>&1; then
		TSAN_PREFIX=(setarch "$(uname -m)" -R)
		echo "ThreadSanitizer needs ASLR off here: running its tests under setarch -R"
		return
	fi
	if [ "$(id -u)" -eq 0 ] && [ -w /proc/sys/vm/mmap_rnd_bits ]; then
		RND_BITS_SAVED=$(cat /proc/sys/vm/mmap_rnd_bits)
		echo 28 >/proc/sys/vm/mmap_rnd_bits
		echo "vm.mmap_rnd_bits lowered from $RND_BITS_SAVED to 28 for the TSan run"
		"$d/tsan" >/dev/null 2>&1 && return
		restore_rnd_bits
	fi
	die "ThreadSanitizer cannot run on this machine (kernel $(uname -r)): see $d/tsan.out"
}

# ---------------------------------------------------------------------------
# Test runs.

# Sanitizer reports go to files in $SANLOG, so that a report from a server the
# suite later kills is not lost in a pipe nobody reads; any file there fails
# the step.  UBSan is the exception: with -fno-sanitize-recover (the Makefile's)
# gcc's runtime prints to stderr whatever log_path says.  abort_on_error makes
# every sanitizer error a death by SIGABRT, which no test takes for success
# (an exit status of 1 could look like echoc's "echo differs"), and the
# pytest log is searched for reports as well.
sanitizer_env()
{
	SANLOG=$LOGDIR/sanitizers-$1
	rm -rf "$SANLOG"
	mkdir -p "$SANLOG"
	SANLOG=$(cd "$SANLOG" && pwd)
	export ASAN_OPTIONS="detect_leaks=$LEAKS:halt_on_error=1:abort_on_error=1:log_path=$SANLOG/asan"
	export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:abort_on_error=1:log_path=$SANLOG/ubsan"
	export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:log_path=$SANLOG/tsan"
	# test_workers.py starts each multi-worker engine 20 times; 5 starts an
	# engine and worker count are enough under a sanitizer, which starts slowly.
	export ECHOD_WORKER_STARTS=5
}

SAN_PATTERN='runtime error:|ERROR: AddressSanitizer|ERROR: LeakSanitizer|WARNING: ThreadSanitizer'

# check_sanitizer_logs [LOG]: fails the step if a sanitizer reported anything.
check_sanitizer_logs()
{
	local f found=0
	for f in "$SANLOG"/*; do
		[ -e "$f" ] || continue
		found=1
		printf '\n--- %s\n' "$f"
		head -60 "$f"
	done
	if [ -n "${1:-}" ] && grep -Eq "$SAN_PATTERN" "$1"; then
		found=1
		printf '\n--- sanitizer reports in %s:\n' "$1"
		grep -E -A12 "$SAN_PATTERN" "$1" | head -60
	fi
	[ "$found" -eq 0 ] || die "$STEP_NAME: sanitizer reports above"
}

# Adds a runner's counts from its log to the totals.
count_cmocka()
{
	PASSED=$((PASSED + $(awk '/^\[  PASSED  \] [0-9]+ test/ {n += $4} END {print n + 0}' "$1")))
	FAILED=$((FAILED + $(awk '/^\[  FAILED  \] [0-9]+ test/ {n += $4} END {print n + 0}' "$1")))
}

count_pytest()
{
	local line kind n
	line=$(grep -E '^=*[ ]*[0-9]+ (passed|failed|skipped|error)' "$1" | tail -1 || true)
	for kind in passed failed skipped error errors; do
		n=$(grep -oE "[0-9]+ $kind\b" <<<"$line" | grep -oE '^[0-9]+' || echo 0)
		case $kind in
		passed) PASSED=$((PASSED + n)) ;;
		skipped) SKIPPED=$((SKIPPED + n)) ;;
		*) FAILED=$((FAILED + n)) ;;
		esac
	done
}

# finish_tests STATUS LOG: fails the step on a test failure or on any
# sanitizer report, showing both.
finish_tests()
{
	local rc=$1
	[ -z "$SANLOG" ] || check_sanitizer_logs "$2"
	[ "$rc" -eq 0 ] || die "$STEP_NAME: exit status $rc"
}

# unit_tests NAME MAKE-ARGS...: builds and runs the cmocka tests.
unit_tests()
{
	local log=$LOGDIR/unit-$1.log rc=0
	shift
	run "$UNIT_TIMEOUT" make -j"$JOBS" "$@" unit 2>&1 | tee "$log" || rc=$?
	count_cmocka "$log"
	finish_tests "$rc" "$log"
}

# pytest's limit on any single test, when pytest-timeout is there.
timeout_arg()
{
	if "$PYTHON" -c 'import pytest_timeout' 2>/dev/null; then
		echo "--timeout=$TEST_TIMEOUT"
	else
		echo "WARNING: pytest-timeout missing: single tests are not time-limited" >&2
	fi
}

# pytest-xdist's options for E2E_JOBS processes (none for 1, or without it).
parallel_args()
{
	[ "$E2E_JOBS" -gt 1 ] || return 0
	if "$PYTHON" -c 'import xdist' 2>/dev/null; then
		echo "-n $E2E_JOBS --dist loadfile"
	else
		echo "WARNING: pytest-xdist missing: the end-to-end tests run one at a time" >&2
	fi
}

# e2e_tests NAME DIR MODELS MARKS [PREFIX...]: the pytest suite against DIR's
# binaries, on MODELS (empty: conftest.py's default, every model), the tests
# that MARKS selects (a pytest -m expression; empty: every test).
e2e_tests()
{
	local dir=$2 models=$3 marks=$4 log=$LOGDIR/e2e-$1.log rc=0
	local cmd=(env) args=(tests/e2e -q -rfEs -p no:cacheprovider)
	shift 4
	[ -z "$marks" ] || args+=(-m "$marks")
	[ -n "$models" ] || cmd+=(-u ECHOD_MODELS)
	cmd+=(ECHOD_BIN="$PWD/$dir/echod" ECHOC_BIN="$PWD/$dir/echoc")
	[ -z "$models" ] || cmd+=(ECHOD_MODELS="$models")
	args+=($(timeout_arg) $(parallel_args))
	run "$E2E_TIMEOUT" "$@" "${cmd[@]}" "$PYTHON" -m pytest "${args[@]}" 2>&1 | tee "$log" ||
		rc=$?
	count_pytest "$log"
	# pytest exits 5 when it collected no test: that is a failure, not a pass.
	[ "$rc" -ne 5 ] || die "$STEP_NAME: no end-to-end test ran"
	finish_tests "$rc" "$log"
}

# pytest_tests NAME DIR [ENV...]: a pytest suite that needs no sanitizer
# variant, run once: tests/build (builds its own trees in a temporary
# directory), tests/bench (make bench's report from fixed results),
# tests/contrib (the shipped HAProxy and Kubernetes files).
pytest_tests()
{
	local name=$1 dir=$2 log=$LOGDIR/$1.log rc=0
	shift 2
	run "$E2E_TIMEOUT" env "$@" "$PYTHON" -m pytest "$dir" -q -rfEs $(timeout_arg) \
		-p no:cacheprovider 2>&1 | tee "$log" || rc=$?
	count_pytest "$log"
	[ "$rc" -ne 5 ] || die "$STEP_NAME: no test ran in $dir"
	finish_tests "$rc" "$log"
}

# The unit tests (Makefile's UNIT names) whose code a build without liburing
# compiles differently: the test file, or a source file it #includes whole,
# has an #ifdef HAVE_LIBURING.  The others test the very code the gcc build's
# unit tests ran, so the build without liburing runs only these.
liburing_units()
{
	local t srcs out=
	for t in tests/unit/test_*.c; do
		srcs=$(sed -nE 's|^#include "\.\./\.\./(src/[^"]+)".*|\1|p' "$t")
		# shellcheck disable=SC2086 # one word per source file
		if grep -q HAVE_LIBURING "$t" $srcs; then
			t=${t##*/test_}
			out+="${t%.c} "
		fi
	done
	echo "${out% }"
}

# The TSan models that are also among the ones asked for.
tsan_models()
{
	local m out=
	for m in $TSAN_MODELS; do
		if [ -z "${ECHOD_MODELS:-}" ] || [[ " $ECHOD_MODELS " == *" $m "* ]]; then
			out+="$m "
		fi
	done
	echo "${out% }"
}

main()
{
	local asan=build-address-undefined tsan=build-thread nouring=build-nouring models
	install_deps
	"$PYTHON" -m pytest --version >/dev/null 2>&1 || die "$PYTHON has no pytest"
	mkdir -p "$LOGDIR"
	SANLOG=
	LEAKS=1

	step "build (gcc)"
	run "$BUILD_TIMEOUT" make -j"$JOBS" all
	step_done

	step "uring engine in the gcc build"
	check_uring_built build
	step_done

	step "build (clang, in build-clang/)"
	run "$BUILD_TIMEOUT" make -j"$JOBS" clang
	step_done

	step "unit tests"
	unit_tests plain
	step_done

	step "end-to-end tests (models: ${ECHOD_MODELS:-all})"
	e2e_tests plain build "${ECHOD_MODELS:-}" ""
	step_done

	step "soak (short: ${CHECK_SOAK_S:-15} s per engine)"
	run 300 env SOAK_S="${CHECK_SOAK_S:-15}" ECHOD_BIN="$PWD/build/echod" "$PYTHON" tests/soak/soak.py
	step_done

	step "make bench's report (tests/bench/) and the shipped configurations (tests/contrib/)"
	pytest_tests bench-report tests/bench
	pytest_tests contrib tests/contrib
	step_done

	step "build without liburing (in $nouring/): unit tests of what liburing changes"
	unit_tests nouring URING=no all UNIT="$(liburing_units)"
	step_done

	step "end-to-end tests without liburing (models: epoll, and auto's pick)"
	e2e_tests nouring $nouring epoll ""
	step_done

	step "build configurations (tests/build/)"
	pytest_tests build-tests tests/build MAKE_JOBS="$JOBS"
	step_done

	step "build (ASan+UBSan, in $asan/)"
	probe_lsan
	run "$BUILD_TIMEOUT" make -j"$JOBS" SANITIZER=address,undefined all
	step_done

	step "unit tests (ASan+UBSan)"
	sanitizer_env asan-unit
	unit_tests asan SANITIZER=address,undefined
	step_done

	step "end-to-end tests (ASan+UBSan, models: ${ECHOD_MODELS:-all})"
	sanitizer_env asan-e2e
	e2e_tests asan $asan "${ECHOD_MODELS:-}" ""
	step_done

	# libFuzzer (clang's libclang-rt-dev): replay tests/fuzz/regressions, then a short fuzz.
	step "fuzz (regression inputs, then ${CHECK_FUZZ_S:-10}s per target)"
	run 300 make -j"$JOBS" FUZZ_S="${CHECK_FUZZ_S:-10}" fuzz
	step_done

	models=$(tsan_models)
	if [ -z "$models" ]; then
		echo "no threaded model among ECHOD_MODELS=\"$ECHOD_MODELS\": TSan run skipped"
	else
		step "build (TSan, in $tsan/)"
		probe_tsan
		run "$BUILD_TIMEOUT" make -j"$JOBS" SANITIZER=thread all
		step_done

		step "end-to-end tests (TSan, models: $models)"
		sanitizer_env tsan-e2e
		# Not the tests marked no_threads: their processes never start a
		# second thread, so ThreadSanitizer has nothing to look at there
		# (docs/testing.md, "What make check runs").
		e2e_tests tsan $tsan "$models" "not no_threads" "${TSAN_PREFIX[@]}"
		restore_rnd_bits
		step_done
	fi

	printf '\n======== summary ========\n'
	printf '%s\n' "${STEPS[@]}"
	printf '%5ss  total\n' "$SECONDS"
	printf 'make check: %d passed, %d failed, %d skipped\n' "$PASSED" "$FAILED" "$SKIPPED"
}

main "$@"
