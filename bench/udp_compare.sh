#!/bin/bash
# udp_compare.sh - UDP ping-pong against echod, socat and xinetd, side by side.
#
# The load, one datagram in flight, is "echoc bench -u" with LOAD=echoc, or
# bench/udp_pingpong.c (the default; written before echoc bench existed, and
# kept as an independent check of it).  The server runs on CPU 0 and the load on CPU 1
# (taskset); each server is measured ROUNDS times for SECONDS each, rounds
# interleaved so the machine's noise falls on every server alike, with a
# fresh server each round.  The server's CPU time (user + system, children
# included: socat forks) is read from /proc before and after each round.
# Everything binds 127.0.0.1 only, and xinetd is told to log nowhere and to
# skip libwrap, so nothing resolves a name.  Needs socat and xinetd; run as
# root (xinetd wants to be).
#
# xinetd drains its socket after each reply (wait = yes), so it loses the
# next datagram whenever that arrives in between: the "lost" column counts
# them, each costing LOST_MS of waiting; "late" counts the lost ones whose
# echo came after all (a slow server, not a dropped datagram).
#
# usage: [LOAD=echoc] bench/udp_compare.sh [SIZE] [SECONDS] [ROUNDS] [LOST_MS]
set -euo pipefail

SIZE=${1:-64}
SECONDS_PER_ROUND=${2:-5}
ROUNDS=${3:-3}
LOST_MS=${4:-20}
LOAD=${LOAD:-pingpong}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
B=${B:-build}
TMP=$(mktemp -d)
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
	rm -rf "$TMP"
}
trap cleanup EXIT

cc -O2 -o "$TMP/udp_pingpong" "$ROOT/bench/udp_pingpong.c"
TCK=$(getconf CLK_TCK)

# A port free for both UDP and TCP (echod binds both) on 127.0.0.1.
free_port() {
	python3 -c '
import socket
while True:
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.bind(("127.0.0.1", 0))
    t = socket.socket()
    try:
        t.bind(("127.0.0.1", u.getsockname()[1]))
        break
    except OSError:
        pass
print(u.getsockname()[1])'
}

# CPU ticks of a process and its reaped children.
cpu_ticks() {
	awk '{ print $14 + $15 + $16 + $17 }' "/proc/$1/stat"
}

# Waits (at most 10 s) until process $2 has a UDP socket bound on port $1.
# No probe datagram: socat UDP-LISTEN would lock on to the prober.
wait_bound() {
	local deadline=$((SECONDS + 10))
	until [ -n "$(ss -Hlun "sport = :$1")" ]; do
		if ! kill -0 "$2" 2>/dev/null || ((SECONDS >= deadline)); then
			echo "nothing bound on port $1" >&2
			return 1
		fi
		sleep 0.05
	done
}

# load PORT: one run of the load generator on CPU 1, one line of figures.
load() {
	if [ "$LOAD" = pingpong ]; then
		taskset -c 1 "$TMP/udp_pingpong" 127.0.0.1 "$1" "$SIZE" "$SECONDS_PER_ROUND" "$LOST_MS"
		return
	fi
	taskset -c 1 "$ROOT/$B/echoc" bench -u -s "$SIZE" -d "$SECONDS_PER_ROUND" \
		-t "$(awk -v ms="$LOST_MS" 'BEGIN { print ms / 1000 }')" --json "127.0.0.1:$1" |
		python3 -c '
import json, sys
r = json.load(sys.stdin)
l, d = r["latency_us"], r["datagrams"]
print("msgs/s %.0f p50_us %.1f p99_us %.1f p999_us %.1f max_us %.1f lost %d late %d" % (
    r["messages_per_s"], l["p50"], l["p99"], l["p999"], l["max"], d["lost"], d["late"]))'
}

# measure NAME PID PORT ROUND: one run, one line.
measure() {
	local name=$1 pid=$2 port=$3 r=$4 c0 c1 out msgs
	c0=$(cpu_ticks "$pid")
	out=$(load "$port") || true
	c1=$(cpu_ticks "$pid")
	if [ -z "$out" ]; then
		printf "%-20s round %d  no echo\n" "$name" "$r"
		return
	fi
	msgs=$(awk '{print $2}' <<<"$out")
	[ "$msgs" != 0 ] || msgs=1
	awk -v n="$name" -v r="$r" -v o="$out" -v m="$msgs" -v d="$SECONDS_PER_ROUND" \
		-v c=$((c1 - c0)) -v t="$TCK" 'BEGIN {
		printf "%-20s round %d  %s  server_cpu_us_per_msg %.2f\n",
			n, r, o, c / t * 1e6 / (m * d) }'
}

# run_one NAME ROUND CMD...: starts CMD (@PORT@ replaced by a free port)
# pinned to CPU 0, measures one round, stops it.
run_one() {
	local name=$1 r=$2 port pid a args=()
	shift 2
	port=$(free_port)
	for a in "$@"; do args+=("${a//@PORT@/$port}"); done
	taskset -c 0 "${args[@]}" &
	pid=$!
	PIDS+=("$pid")
	wait_bound "$port" "$pid"
	measure "$name" "$pid" "$port" "$r"
	kill "$pid"
	wait "$pid" 2>/dev/null || true
}

# xinetd's built-in datagram echo; it finds the built-in by the service
# name (echo) and the socket type.  The wrapper writes the port in first.
cat >"$TMP/xinetd.conf.in" <<'CONF'
defaults
{
	log_type       = FILE /dev/null
	log_on_success =
	log_on_failure =
	instances      = UNLIMITED
	per_source     = UNLIMITED
	cps            = 100000000 1
}
service echo
{
	type        = INTERNAL UNLISTED
	id          = echo-dgram
	socket_type = dgram
	protocol    = udp
	wait        = yes
	user        = root
	bind        = 127.0.0.1
	port        = @PORT@
	flags       = NOLIBWRAP
}
CONF
cat >"$TMP/xinetd.sh" <<WRAPPER
#!/bin/sh
sed "s/@PORT@/\$1/" "$TMP/xinetd.conf.in" >"$TMP/xinetd.conf"
exec xinetd -dontfork -filelog "$TMP/xinetd.log" -f "$TMP/xinetd.conf" -pidfile "$TMP/xinetd.pid"
WRAPPER
chmod +x "$TMP/xinetd.sh"

echo "# $(uname -r), $(nproc) CPUs,$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"
echo "# load $LOAD, size $SIZE bytes, $ROUNDS rounds of $SECONDS_PER_ROUND s," \
	"lost after $LOST_MS ms, server on CPU 0, load on CPU 1"
for r in $(seq 1 "$ROUNDS"); do
	# echod: one UDP worker (the server has one CPU), no rate limit for the bench.
	run_one "echod" "$r" "$ROOT/$B/echod" -l "127.0.0.1:@PORT@" --udp --udp-rate 0 \
		-m epoll -w 1 -q 2>/dev/null
	# socat, one session: the first peer's datagrams only (socat at its fastest).
	# echoc bench probes from a socket of its own first, and socat would
	# then answer only that probe's port: pingpong load only.
	if [ "$LOAD" = pingpong ]; then
		run_one "socat UDP-LISTEN" "$r" socat "UDP-LISTEN:@PORT@,bind=127.0.0.1,reuseaddr" PIPE
	fi
	# socat as a server for any peer: a child process per datagram.
	run_one "socat RECVFROM,fork" "$r" \
		socat "UDP-RECVFROM:@PORT@,bind=127.0.0.1,reuseaddr,fork" PIPE
	run_one "xinetd echo-dgram" "$r" "$TMP/xinetd.sh" "@PORT@"
done
