#!/usr/bin/env bash
# uring_vs_epoll.sh - the uring and epoll models side by side, in one run.
#
#   bench/uring_vs_epoll.sh [RUNS] [SECONDS]      (defaults: 3 runs, 5 s each)
#
# The server (one worker) is pinned to CPU 0 and the load generator
# (bench/loadgen.c, built as build/loadgen) to CPU 1.  Each scenario runs
# RUNS times per model, alternating the models so drifting background load
# hits both alike.  Reported per model: messages/s, p99 latency, and server
# CPU time per message (utime+stime from /proc/PID/stat over the measured
# window), as the median of the runs with the min-max spread.
#
# Loopback only.  Numbers from a shared or virtual machine are noisy: run
# it on a quiet one, and read the spread before the median.
set -euo pipefail

RUNS=${1:-3}
SECS=${2:-5}
WARMUP=1
ROOT=$(cd "$(dirname "$0")/.." && pwd)
B=${B:-build}
ECHOD=$ROOT/$B/echod
LOADGEN=$ROOT/$B/loadgen
SCENARIOS=(
	"1 conn, 64 B ping-pong|-c 1 -s 64 -d 1"
	"50 conns, 128 B|-c 50 -s 128 -d 1"
	"500 conns, 512 B|-c 500 -s 512 -d 1"
	"50 conns, 128 B, 16 in flight|-c 50 -s 128 -d 16"
)
MODELS=(uring epoll)

make -C "$ROOT" -s "$B/echod" "$B/loadgen"
[ "$(nproc)" -ge 2 ] || echo "warning: fewer than 2 CPUs; server and load share one" >&2

SERVER_PID=
ERR=$(mktemp)
cleanup() {
	[ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
	rm -f "$ERR"
}
trap cleanup EXIT

# Starts echod pinned to CPU 0; sets SERVER_PID and PORT.
start_server() {
	: >"$ERR"
	taskset -c 0 "$ECHOD" -m "$1" -w 1 -q -l 127.0.0.1:0 2>"$ERR" &
	SERVER_PID=$!
	for _ in $(seq 100); do
		PORT=$(sed -n 's/^echod: listening on tcp 127.0.0.1:\([0-9]*\)$/\1/p' "$ERR")
		[ -n "$PORT" ] && return 0
		kill -0 "$SERVER_PID" 2>/dev/null || break
		sleep 0.05
	done
	echo "echod -m $1 did not start: $(cat "$ERR")" >&2
	exit 1
}

stop_server() {
	kill "$SERVER_PID"
	wait "$SERVER_PID" || true
	SERVER_PID=
}

# Prints "min median max" of the numbers on stdin.
spread() {
	sort -g | awk '{v[NR]=$1} END {printf "%s %s %s\n", v[1], v[int((NR+1)/2)], v[NR]}'
}

field() {
	sed -n "s/.*$1=\([^ ]*\).*/\1/p"
}

echo "# $(date -u +%FT%TZ) $(uname -r) $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# $RUNS runs x ${SECS}s (+${WARMUP}s warm-up); median [min-max]"
printf "%-32s %-6s %-28s %-22s %-22s\n" scenario model "msgs/s" "p99 us" "server CPU us/msg"
for sc in "${SCENARIOS[@]}"; do
	name=${sc%%|*}
	args=${sc#*|}
	declare -A out=()
	for run in $(seq "$RUNS"); do
		for m in "${MODELS[@]}"; do
			start_server "$m"
			# shellcheck disable=SC2086
			line=$(taskset -c 1 "$LOADGEN" -P "$PORT" $args -w "$WARMUP" -t "$SECS" \
				-p "$SERVER_PID")
			stop_server
			out[$m]+="$line"$'\n'
		done
	done
	for m in "${MODELS[@]}"; do
		cols=()
		for f in msgs_per_s p99_us cpu_us_per_msg; do
			read -r lo med hi < <(printf "%s" "${out[$m]}" | field "$f" | spread)
			cols+=("$med [$lo-$hi]")
		done
		errs=$(printf "%s" "${out[$m]}" | field errors | paste -sd+ | bc)
		printf "%-32s %-6s %-28s %-22s %-22s%s\n" "$name" "$m" "${cols[0]}" "${cols[1]}" \
			"${cols[2]}" "$([ "$errs" = 0 ] || echo " ERRORS: $errs")"
	done
	unset out
done
