#!/usr/bin/env bash
# tests/fuzz/coverage.sh TARGET - source coverage of what the fuzzer has reached for TARGET.
#
# Builds the target with clang's source-based coverage (no sanitizers) in
# build-fuzz/coverage/, runs it once over the seed corpus, the regression
# inputs and build-fuzz/corpus/TARGET/ (what `make fuzz` runs found), and
# prints llvm-cov's per-function report for the modules under test.  libFuzzer's
# own cov: counts edges of the whole binary, sanitizer checks included; this
# says which lines and branches of the code under test were run.
set -euo pipefail

t=${1:?usage: coverage.sh options|addr|conn}
cd "$(dirname "$0")/../.."
# The modules each target links, and the functions it is meant to reach.
case $t in
options)
	srcs=(src/common/opts.c src/common/net.c src/echod/config.c src/echoc/echoc_config.c src/echoc/bench_pattern.c src/echoc/bench_worker.c src/echoc/bench_tcp.c src/echoc/bench_udp.c src/echoc/bench_report.c src/echoc/hist.c)
	funcs='opts_parse|build_getopt|find_by_val|parse_num|parse_seconds|parse_choice|parse_addr|apply|describe_bad_option|config_parse|config_defaults|validate|only_unix|client_config_parse|parse_args|apply_mode_defaults|resolve_target|net_parse_addr'
	;;
addr) srcs=(src/common/net.c) funcs='net_parse_addr|parse_port|all_digits|parse_unix|split_' ;;
conn) srcs=(src/echod/conn.c) funcs='conn' ;;
*) echo "coverage.sh: unknown target $t" >&2 && exit 2 ;;
esac
d=build-fuzz/coverage/$t
mkdir -p "$d" "build-fuzz/corpus/$t"
clang -std=c11 -D_GNU_SOURCE -O1 -g -fsanitize=fuzzer -fprofile-instr-generate -fcoverage-mapping \
	-Isrc/common -Isrc/echod -Isrc/echoc -o "$d/fuzz_$t" "tests/fuzz/fuzz_$t.c" "${srcs[@]}" \
	-pthread -lm
dirs=("build-fuzz/corpus/$t" "tests/fuzz/corpus/$t")
[ ! -d "tests/fuzz/regressions/$t" ] || dirs+=("tests/fuzz/regressions/$t")
LLVM_PROFILE_FILE="$d/run.profraw" "$d/fuzz_$t" -runs=0 "${dirs[@]}" >"$d/run.log" 2>&1
llvm-profdata merge -sparse "$d/run.profraw" -o "$d/run.profdata"
llvm-cov report "$d/fuzz_$t" -instr-profile="$d/run.profdata" -show-functions \
	"${srcs[@]}" src/echoc/bench.c | grep -E "^(Name|---)|^([a-z_]+\.c:)?($funcs)[a-z_]* "
