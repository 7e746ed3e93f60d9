#!/usr/bin/env bash
# bench/ab.sh BUILD_A BUILD_B - two builds of echod, -m uring and -m epoll,
# alternating run by run under the same load, so that a change is compared
# with what it changed rather than with another moment's background load.
#
#   bench/ab.sh build-base build      (build each first: make B=build-base ...)
#
# Scenarios: the first three of SUITE=uring-vs-epoll (50 x 128 B, 50 x 64 B
# with 16 in flight, 500 x 512 B), REPS=N (default 3) rounds of 2 s each.
# Prints one line per run: messages/s and the server's CPU per message
# (utime+stime over its whole life, warm-up included, / measured messages).
# Server pinned to CPU 0, load (BUILD_B's echoc) to CPU 1.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
LIB="/usr/bin/python3 $ROOT/bench/lib.py"
[ $# = 2 ] || { echo "usage: bench/ab.sh BUILD_A BUILD_B" >&2; exit 2; }
TICK_US=$((1000000 / $(getconf CLK_TCK)))

one() { # BUILD MODEL ARGS...
	local b=$1 m=$2 port pid c0 c1 out
	shift 2
	port=$($LIB freeport tcp)
	setsid taskset -c 0 "$ROOT/$b/echod" -m "$m" -w 1 -l "127.0.0.1:$port" -q --grace 0 \
		</dev/null >/dev/null 2>&1 &
	pid=$!
	$LIB waitport tcp "$port" 10 || { kill -- -"$pid"; return 1; }
	c0=$(awk '{print $14 + $15}' "/proc/$pid/stat")
	out=$(taskset -c 1 "$ROOT/$B_ECHOC" bench --json -d 2 --warmup 0.5 "$@" "127.0.0.1:$port")
	c1=$(awk '{print $14 + $15}' "/proc/$pid/stat")
	kill -TERM -- -"$pid"
	wait "$pid" 2>/dev/null
	/usr/bin/python3 -c 'import json, sys
r = json.loads(sys.argv[1])
print("%s | %-12s %-5s | %9.0f msgs/s | %6.2f us/msg" % (sys.argv[2], sys.argv[3], sys.argv[4],
      r["messages_per_s"], int(sys.argv[5]) / max(r["messages"], 1)))' \
		"$out" "$*" "$b" "$m" "$(((c1 - c0) * TICK_US))"
}

B_ECHOC=$2/echoc
for sc in "-c 50 -s 128" "-c 50 -s 64 --depth 16" "-c 500 -s 512 -T 1"; do
	for _ in $(seq "${REPS:-3}"); do
		for b in "$1" "$2"; do
			for m in uring epoll; do
				# shellcheck disable=SC2086 # sc is a word list on purpose
				one "$b" "$m" $sc
			done
		done
	done
done
