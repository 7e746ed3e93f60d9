#!/usr/bin/env bash
# bench/run.sh - echod's models and established echo servers, side by side.
#
#   bench/run.sh [SUITE]                 or: make bench [SUITE=...] [QUICK=1]
#
#   matrix          (default) every echod model and every peer (socat, ncat,
#                   xinetd, node, go) over every scenario, once each
#   uring-vs-epoll  is io_uring worth it?  echod -m uring against -m epoll on
#                   1 conn x 64 B, 50 x 128 B, 500 x 512 B and 50 x 64 B with
#                   16 in flight
#   million         idle connections: one echod filled to its descriptor cap,
#                   then up to 1,000,000 over N echod on one port
#                   (SO_REUSEPORT) if memory allows; bench/million.py says how
#   idle            memory per idle connection: every echod model holding
#                   IDLE_CONNS (5000) connections that each echo 16 B every
#                   2 s; the notes add what the kernel holds (machine-wide,
#                   both ends of each connection)
#   udp             echod's UDP echo against the usual ones: echod --udp
#                   --udp-rate 0 against socat (UDP-LISTEN, one peer;
#                   UDP-RECVFROM,fork) and xinetd's echo-dgram, one datagram
#                   in flight
#   placement       where the load runs: echod -m epoll -w 1 with the load on
#                   the server's CPU (echod-epoll@samecpu) and on the other
#                   one, 1 conn x 64 B and 50 x 128 B; compare total CPU
#   locality        does pinning and steering pay?  echod -w <CPUs> with
#                   --cpu-affinity auto against off, epoll and uring, load
#                   pinned one thread per CPU (echoc bench --cpus), 50 and 500
#                   conns x 128 B; total system CPU per message from
#                   /proc/stat (bench/locality.py, a runner of its own: the
#                   server is not pinned to CPU 0 as everywhere else here)
#   latency         is --busy-poll worth it?  echod -m epoll and -m uring with
#                   --busy-poll (one worker: one CPU spinning) and without, on
#                   1 conn x 64 B, against echoc bench --busy-poll and against
#                   plain echoc bench; every figure is also set against the
#                   floor below
#
# Every suite starts with the latency floor (build/echod-floor, bench/floor.c):
# two threads pinned as the server and the load are, spinning on one loopback
# connection with no server logic, REPS times; its line is printed first and it
# is the "floor" row of the 1 conn x 64 B table (the latency suite's: the one
# with echoc --busy-poll), with each server's ratio to it in the report.
#
#   QUICK=1   shorter runs (the whole matrix in under 2 minutes)
#   REPS=N    repetitions of each run (default 1 for matrix, 3 otherwise);
#             the servers alternate within each repetition, so drifting
#             background load falls on all of them alike, and the report
#             gives the median with the [min-max] spread.
#
# The load is always `echoc bench` (build/echoc).  Each server runs pinned to
# CPU 0 and the load to CPU 1 (a server named NAME@samecpu: the load on CPU 0
# too), one fresh server per run, so CPU and memory figures start from a clean
# process.  Server CPU per message is utime+stime of the server's process tree
# (from /proc/PID/stat) over the measured window; total CPU per message is every
# CPU's busy time (from /proc/stat) over the same window, read at the same
# instants: the load, softirqs and kworkers included.
#
# Everything is on loopback with numeric addresses: ncat runs with -n,
# xinetd logs nothing that would make it look up a client and skips libwrap,
# and echoc is always given 127.0.0.1, so the run never sends a DNS query.
#
# Writes bench/results/SUITE-DATE.md and .tsv (the tables), SUITE-DATE/ (each
# run's echoc JSON and latency histogram, and report.html: charts and tables,
# see bench/report.py), latest-SUITE.md and latest.html.  Peers that are not
# installed are installed with apt-get when root (before the run), else skipped
# and named in the report; so is python3-matplotlib, which draws the charts
# (without it the HTML report has the tables only).
set -uo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
B=${B:-build}
ECHOD=$ROOT/$B/echod
ECHOC=$ROOT/$B/echoc
FLOOR=$ROOT/$B/echod-floor
PY=/usr/bin/python3
LIB="$PY $HERE/lib.py"
OUT=$HERE/results
STAMP=$(date -u +%Y%m%d-%H%M%S)
SUITE=${1:-${SUITE:-matrix}}
# million: idle connections to one echod's descriptor cap, then a million
# over many echod on one port; a script of its own (not part of make check).
if [ "$SUITE" = million ]; then
	exec $PY "$HERE/million.py" "$ECHOD" "$ECHOC" "$OUT"
fi

if [ -n "${QUICK:-}" ]; then
	DUR=0.5 WARM=0.2 IDLE_WARM=0.6 IDLE_CONNS=1000 FORK_IDLE_CONNS=200 FLOOR_N=20000
else
	DUR=4 WARM=1 IDLE_WARM=2 IDLE_CONNS=5000 FORK_IDLE_CONNS=1000 FLOOR_N=200000
fi
# Seconds a run costs beyond warm-up and window (start-up, connects, close),
# from QUICK runs on a 2-CPU VM: 0.2 s for echod, 0.5 s on average over the
# matrix.  Only used for the planned time printed before the run.
RUN_OVERHEAD=0.5

TMP=$(mktemp -d /tmp/echod-bench.XXXXXX)
SERVER_PID=
NOTES=()

# Kills a server and everything it forked: each runs in its own session.
stop_server() {
	local pid=$1
	[ -n "$pid" ] || return 0
	kill -TERM -- "-$pid" 2>/dev/null
	for _ in $(seq 100); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.02
	done
	kill -KILL -- "-$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
	return 0
}

cleanup() {
	stop_server "$SERVER_PID"
	rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

note() {
	NOTES+=("$*")
	echo "bench: $*" >&2
}

if [ "$(nproc)" -ge 2 ]; then
	PIN_SERVER="taskset -c 0" PIN_LOAD="taskset -c 1"
else
	PIN_SERVER="" PIN_LOAD=""
	note "one CPU: server and load share it (no pinning)"
fi

# ---------------------------------------------------------------- suites

# key|title|echoc arguments|connections|kind
SCENARIOS=(
	"1x64|1 conn x 64 B|-c 1 -s 64|1|tcp"
	# The load spins too (a CPU of its own), so the latency is the server's.
	"1x64spin|1 conn x 64 B, echoc --busy-poll|-c 1 -s 64 --busy-poll|1|tcp"
	"50x128|50 conns x 128 B|-c 50 -s 128|50|tcp"
	"500x512|500 conns x 512 B|-c 500 -s 512 -T 1|500|tcp"
	"50x64d16|50 conns x 64 B, depth 16|-c 50 -s 64 --depth 16|50|tcp"
	"connrate|connection rate|--mode connrate -c 4|4|connrate"
	"bulk|bulk 4 conns x 64 KiB|--mode bulk -c 4 -s 65536|4|tcp"
	"idle|idle conns|--mode idle -c IDLE|IDLE|idle"
	"udp4|udp 4 x 64 B|-u -c 4 -s 64 -t 0.2|4|udp"
	# One socket, so socat UDP-LISTEN (one peer only) can take part.  A lost
	# datagram costs 20 ms: xinetd drops one now and then (see docs/udp.md).
	"udp1|udp 1 x 64 B|-u -c 1 -s 64 -t 0.02|1|udp"
)

# Sets PICK (scenario keys), CANDIDATES (servers) and REPS for suite $1, and
# FLOOR_SCENARIO, the table the floor's rows go to.
suite() {
	FLOOR_SCENARIO=1x64
	case $1 in
	matrix)
		PICK=(1x64 50x128 500x512 50x64d16 connrate bulk idle udp4)
		CANDIDATES=(echod-iterative echod-threads echod-epoll echod-uring echod
			socat ncat xinetd node go)
		REPS=${REPS:-1} ;;
	uring-vs-epoll)
		PICK=(1x64 50x128 500x512 50x64d16)
		CANDIDATES=(echod-uring echod-epoll)
		REPS=${REPS:-3} ;;
	locality)
		$PY "$HERE/locality.py"
		exit ;;
	idle)
		PICK=(idle)
		CANDIDATES=(echod-iterative echod-threads echod-epoll echod-uring)
		REPS=${REPS:-3} ;;
	udp)
		PICK=(udp1)
		CANDIDATES=(echod socat-listen socat xinetd)
		REPS=${REPS:-3} ;;
	placement)
		PICK=(1x64 50x128)
		CANDIDATES=(echod-epoll@samecpu echod-epoll)
		REPS=${REPS:-3} ;;
	latency)
		PICK=(1x64spin 1x64)
		CANDIDATES=(echod-epoll-busy echod-uring-busy echod-epoll echod-uring)
		FLOOR_SCENARIO=1x64spin
		REPS=${REPS:-3} ;;
	*)
		echo "usage: bench/run.sh [matrix|uring-vs-epoll|idle|udp|placement|locality|latency|million]" >&2
		exit 2 ;;
	esac
}

scenario() { # KEY: the scenario's table line
	local s
	for s in "${SCENARIOS[@]}"; do
		[ "${s%%|*}" = "$1" ] && echo "$s" && return 0
	done
	return 1
}

# ---------------------------------------------------------------- peers

need() { # need COMMAND PACKAGE: true when COMMAND exists, installing PACKAGE as root
	command -v "$1" >/dev/null && return 0
	if [ "$(id -u)" = 0 ]; then
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$2" >/dev/null 2>&1
	fi
	command -v "$1" >/dev/null
}

# The charts of the HTML report need matplotlib, installed as the peers are;
# without it the report says what to install and keeps its tables.
plotting() {
	$PY -c 'import matplotlib' 2>/dev/null && return 0
	if [ "$(id -u)" = 0 ]; then
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
			python3-matplotlib >/dev/null 2>&1
	fi
	$PY -c 'import matplotlib' 2>/dev/null && return 0
	note "charts: python3-matplotlib is not installed (run: sudo apt-get install -y python3-matplotlib); the report has tables only"
}

# xinetd's internal echo for KIND (tcp or udp) on PORT.  xinetd finds internal
# services by name ("echo").  No USERID or HOST logging and no libwrap: any of
# them would look the client up.  The log goes to a file nobody reads.
write_xinetd_conf() { # KIND PORT
	local type=stream wait=no
	[ "$1" = udp ] && type=dgram wait=yes
	cat >"$TMP/xinetd.conf" <<CONF
defaults
{
	log_type        = FILE $TMP/xinetd.log
	log_on_success  =
	log_on_failure  =
	instances       = UNLIMITED
	per_source      = UNLIMITED
	cps             = 1000000 1
}
service echo
{
	type            = INTERNAL UNLISTED
	id              = echo-$type
	socket_type     = $type
	protocol        = $1
	wait            = $wait
	user            = root
	bind            = 127.0.0.1
	port            = $2
	flags           = NOLIBWRAP
	log_on_success  =
	log_on_failure  =
}
CONF
}

GO_ECHO=
build_go() {
	need go golang-go || return 1
	(cd "$HERE/peers" && GOPROXY=off GOFLAGS="" GOCACHE="$TMP/gocache" GOPATH="$TMP/gopath" \
		go build -o "$TMP/echo-go" echo.go) >"$TMP/go-build.log" 2>&1 || return 1
	GO_ECHO=$TMP/echo-go
}

# True when echod -m $1 starts here (the model's probe accepts this kernel).
echod_runs() {
	local p ok=1
	"$ECHOD" -m "$1" -l 127.0.0.1:0 -q --grace 0 >/dev/null 2>"$TMP/probe" &
	p=$!
	for _ in $(seq 100); do
		grep -q listening "$TMP/probe" && ok=0 && break
		kill -0 $p 2>/dev/null || break
		sleep 0.02
	done
	kill $p 2>/dev/null
	wait $p 2>/dev/null
	return $ok
}

# Server $1 without its placement suffix (echod-epoll@samecpu: echod-epoll).
base_server() { echo "${1%@*}"; }

# The command that pins the load for server $1: on the server's CPU for
# NAME@samecpu, else on its own.
load_pinning() {
	case $1 in *@samecpu) [ -n "$PIN_SERVER" ] && echo "$PIN_SERVER" ;;
	*) echo "$PIN_LOAD" ;; esac
}

# True when server $1 can run here; else a note says why not.
available() {
	local why="not installed, cannot install"
	case $(base_server "$1") in
	echod) return 0 ;;
	echod-*) echod_runs "$(echod_model "$(base_server "$1")")" && return 0; why=$(head -1 "$TMP/probe") ;;
	socat | socat-listen) need socat socat && return 0 ;;
	ncat) need ncat ncat && return 0 ;;
	xinetd) need xinetd xinetd && return 0 ;;
	node) need node nodejs && return 0 ;;
	go) build_go && return 0; why="golang-go missing or the build failed" ;;
	esac
	note "$1 skipped: $why"
	return 1
}

forks() { # servers that fork a process per connection
	case $1 in socat | ncat | xinetd) return 0 ;; esac
	return 1
}

# echod-MODEL or echod-MODEL-busy (--busy-poll): the MODEL.
echod_model() {
	local m=${1#echod-}
	echo "${m%-busy}"
}

# The command line of server $1 on PORT (TCP) or UPORT (UDP, 0 for a TCP run).
server_cmd() { # NAME PORT UPORT ONCE
	local name=$1 port=$2 uport=$3
	case $name in
	echod) # UDP does not depend on --model: one UDP worker, no rate limit.
		CMD=("$ECHOD" -m epoll -w 1 -l "127.0.0.1:$uport" -q --grace 0 --udp --udp-rate 0) ;;
	echod-*)
		CMD=("$ECHOD" -m "$(echod_model "$name")" -l "127.0.0.1:$port" -q --grace 0)
		case $(echod_model "$name") in epoll | uring) CMD+=(-w 1) ;; esac
		case $name in *-busy) CMD+=(--busy-poll) ;; esac
		[ "$4" = 1 ] && CMD+=(--once) ;;
	socat-listen) CMD=(socat "UDP4-LISTEN:$uport,bind=127.0.0.1,reuseaddr" PIPE) ;;
	socat)
		if [ "$uport" != 0 ]; then
			CMD=(socat "UDP4-RECVFROM:$uport,bind=127.0.0.1,reuseaddr,fork" PIPE)
		else
			CMD=(socat "TCP-LISTEN:$port,bind=127.0.0.1,reuseaddr,fork,backlog=4096" PIPE)
		fi ;;
	ncat) CMD=(ncat -n -l 127.0.0.1 "$port" -k -m 100000 --exec /bin/cat) ;;
	xinetd)
		if [ "$uport" != 0 ]; then write_xinetd_conf udp "$uport"
		else write_xinetd_conf tcp "$port"; fi
		CMD=(xinetd -dontfork -filelog "$TMP/xinetd-own.log" -f "$TMP/xinetd.conf" \
			-pidfile "$TMP/xinetd.pid") ;;
	node) CMD=(node "$HERE/peers/echo.js" "$port" "$uport") ;;
	go) CMD=("$GO_ECHO" -port "$port" -udp "$uport") ;;
	esac
}

# Starts server $1 in a session of its own (so stop_server kills its tree)
# and waits until it listens; sets SERVER_PID.
start_server() { # NAME PORT UPORT ONCE
	local kind=tcp port=$2
	[ "$3" != 0 ] && kind=udp port=$3
	server_cmd "$@"
	# shellcheck disable=SC2086 # PIN_SERVER is empty or a command and its arguments
	setsid $PIN_SERVER "${CMD[@]}" </dev/null >"$TMP/server.log" 2>&1 &
	SERVER_PID=$!
	$LIB waitport "$kind" "$port" 10 && return 0
	stop_server "$SERVER_PID"
	SERVER_PID=
	return 1
}

# ---------------------------------------------------------------- one run

# Whether server $1 takes part in a scenario of kind $2 with $3 connections.
applies() {
	if [ "$2" = udp ]; then
		case $1 in
		echod | socat | xinetd | node | go) return 0 ;;
		socat-listen) [ "$3" = 1 ] ;; # it answers one peer only
		*) return 1 ;;
		esac
		return
	fi
	case $1 in
	echod | socat-listen) return 1 ;; # UDP only
	# iterative serves one client at a time: only the one-connection runs,
	# and the idle suite, which shows what the waiting ones cost it.
	echod-iterative) [ "$3" = 1 ] || [ "$2" = connrate ] || [ "$SUITE" = idle ] ;;
	*) return 0 ;;
	esac
}

# Adjusts the caller's conns, args, warm, extra and note for kind $1 and server $2.
adjust() {
	case $1 in
	connrate)
		case $2 in echod-*) once=1 extra=(--once) note="--once" ;;
		*) note="client closes first" ;; esac ;;
	idle)
		conns=$IDLE_CONNS
		forks "$2" && conns=$FORK_IDLE_CONNS && note="forking server: $conns conns"
		args=${args/IDLE/$conns}
		[ "$2" = echod-iterative ] && note="serves one conn, the rest wait in the listen backlog"
		warm=$IDLE_WARM ;;
	esac
}

run_one() { # KEY SERVER
	local key title args conns kind srv once=0 warm=$WARM extra=() note=""
	local port uport=0 target t0 rc rss0 cpu0 cpu1 rss_mid nprocs sys0 sys1 load0 load1
	local tcp0 slab0 tcp_mid slab_mid
	local pin_load
	srv=$(base_server "$2") pin_load=$(load_pinning "$2")
	IFS='|' read -r key title args conns kind <<<"$(scenario "$1")"
	adjust "$kind" "$srv"
	port=$($LIB freeport tcp)
	[ "$kind" = udp ] && uport=$($LIB freeport "$([ "$srv" = echod ] && echo both || echo udp)")
	if ! start_server "$srv" "$port" "$uport" "$once"; then
		note "$srv did not start for '$title': $(head -c 200 "$TMP/server.log")"
		return
	fi
	target=127.0.0.1:$port
	[ "$kind" = udp ] && target=127.0.0.1:$uport
	read -r _ rss0 _ <<<"$($LIB proc "$SERVER_PID")"
	read -r tcp0 slab0 <<<"$($LIB kmem)"
	# The sampler and echoc start together: the server's, the load's and every
	# CPU's time where the window starts and ends, memory halfway.
	rm -f "$TMP/result.hgrm"
	t0=$EPOCHREALTIME
	# shellcheck disable=SC2086 # args and pin_load are word lists on purpose
	timeout 120 $pin_load "$ECHOC" bench --json -d "$DUR" --warmup "$warm" $args \
		"${extra[@]}" --hist "$TMP/result.hgrm" "$target" >"$TMP/result.json" 2>"$TMP/echoc.err" &
	local load=$!
	$LIB sample "$SERVER_PID" "$t0" "$warm" "$DUR" "$load" >"$TMP/samples" &
	local sampler=$!
	wait $load
	rc=$?
	wait $sampler
	{ read -r cpu0 _ _ sys0 load0 _; read -r _ rss_mid nprocs _ _ tcp_mid slab_mid; read -r cpu1 _ _ sys1 load1 _; } \
		<"$TMP/samples"
	stop_server "$SERVER_PID"
	SERVER_PID=
	[ $rc != 0 ] && note="$note exit $rc: $(head -1 "$TMP/echoc.err")"
	[ "$kind" = idle ] && note="$note$(kernel_note "$conns" "$tcp0" "$slab0" "$tcp_mid" "$slab_mid")"
	$LIB row "$TMP/result.json" "$title" "$2" "$conns" "$cpu0" "$cpu1" "$rss0" "$rss_mid" \
		"$nprocs" "$note" "$sys0" "$sys1" "$load0" "$load1" >>"$TSV"
	tail -1 "$TSV" | cut -f1-6,9- >&2
	keep_run_files "$(wc -l <"$TSV")"
}

# What the kernel's memory grew by per connection, for the notes of an idle
# run: TCP socket buffers (sockstat pages) and slab (socket structures), both
# machine-wide and for both ends of each connection, so other work shows too.
kernel_note() { # CONNS TCP_PAGES0 SLAB_KB0 TCP_PAGES SLAB_KB
	awk -v n="$1" -v t0="$2" -v s0="$3" -v t="$4" -v s="$5" \
		'BEGIN { if (t == "" || s == "") exit
			printf " kernel (machine-wide, both ends): slab %+.1f KiB/conn, TCP buffers %+d pages",
				(s - s0) / n, t - t0 }'
}

# The TSV's row N keeps echoc's JSON and latency histogram as RUN/runs/N.json
# and N.hgrm, for the HTML report (bench/report.py).
keep_run_files() { # N
	mv "$TMP/result.json" "$RUN/runs/$1.json"
	[ -s "$TMP/result.hgrm" ] && mv "$TMP/result.hgrm" "$RUN/runs/$1.hgrm"
	return 0
}

# The latency floor, REPS times: rows "floor" of scenario FLOOR_SCENARIO.
run_floor() {
	local title i
	IFS='|' read -r _ title _ <<<"$(scenario "$FLOOR_SCENARIO")"
	for i in $(seq "$REPS"); do
		rm -f "$TMP/result.hgrm"
		if ! timeout 120 "$FLOOR" -n "$FLOOR_N" --json --hist "$TMP/result.hgrm" \
			>"$TMP/result.json" 2>"$TMP/floor.err"; then
			note "floor did not run: $(head -c 200 "$TMP/floor.err")"
			return
		fi
		$LIB floor "$TMP/result.json" "$title" >>"$TSV"
		echo "bench: floor $i/$REPS ($title): $(tail -1 "$TSV" | cut -f3-5)" >&2
		keep_run_files "$(wc -l <"$TSV")"
	done
}

# ---------------------------------------------------------------- the run

# Fills RUNS with "KEY|SERVER", repetition by repetition, servers alternating;
# prints the planned time.
plan() {
	local key srv conns kind warm secs=0
	RUNS=() UDP_RUNS=
	for key in "${PICK[@]}"; do
		IFS='|' read -r _ _ _ conns kind <<<"$(scenario "$key")"
		warm=$WARM
		[ "$kind" = idle ] && warm=$IDLE_WARM
		for _ in $(seq "$REPS"); do
			for srv in "${SERVERS[@]}"; do
				applies "$(base_server "$srv")" "$kind" "$conns" || continue
				RUNS+=("$key|$srv")
				[ "$kind" = udp ] && UDP_RUNS=1
				secs=$(echo "$secs + $warm + $DUR + $RUN_OVERHEAD" | bc)
			done
		done
	done
	echo "bench: $SUITE: ${#RUNS[@]} runs, planned about ${secs%.*} s" >&2
}

machine_facts() {
	echo "# echod benchmark: $SUITE, $(date -u '+%Y-%m-%d %H:%M UTC')${QUICK:+ (QUICK)}"
	echo
	echo "- CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(nproc) cores"
	echo "- kernel: $(uname -srm)"
	echo "- echod: $(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown)"
	echo "- peers: socat $(socat -V 2>/dev/null | sed -n 2p | awk '{print $3}'), ncat $(ncat --version 2>&1 | awk '{print $3; exit}'), xinetd $(xinetd -version 2>&1 | awk '{print $1; exit}'), node $(node --version 2>/dev/null), $(go version 2>/dev/null | awk '{print $3}')"
	echo "- load: echoc bench; pinning: server ${PIN_SERVER:-none}, load ${PIN_LOAD:-none}; echod epoll/uring with -w 1 (one CPU)"
	echo "- floor: build/echod-floor -n $FLOOR_N (bench/floor.c), two spinning threads pinned to CPU 0 (server) and 1 (load), no server logic; echod-MODEL-busy is echod --busy-poll"
	echo "- each run: ${WARM} s warm-up (idle: ${IDLE_WARM} s) then ${DUR} s measured; a fresh server per run"
	echo "- repetitions: $REPS, servers alternating; with more than one, each figure is the median [min-max]"
	echo "- CPU per message: server utime+stime (whole process tree) over the measured window / messages"
	echo "- total CPU per message (all CPUs): busy time of every CPU from /proc/stat (user nice system irq softirq steal) over the same window / messages: server, load, softirqs and kworkers"
	echo "- CPU time resolution: units of $((1000 / $(getconf CLK_TCK))) ms; a window is $(echo "$DUR * $(getconf CLK_TCK) * $(nproc)" | bc | cut -d. -f1) units ($DUR s x $(nproc) CPUs); /proc/stat's busy time is sampled at each kernel tick (docs/bench.md, Precision)"
	[ -n "${QUICK:-}" ] && echo "- note: QUICK: CPU figures are coarse (a window of $DUR s is $(echo "$DUR * $(getconf CLK_TCK)" | bc | cut -d. -f1) units of CPU time per CPU): read their order of magnitude only"
	[ "$SUITE" = placement ] && echo "- placement: NAME@samecpu runs the load on the server's CPU (${PIN_SERVER:-unpinned}); the others on ${PIN_LOAD:-no CPU in particular}"
	echo "- memory: VmRSS summed over the server's processes halfway through; per connection = (that - before) / connections"
	echo "- MB/s and messages/s count echoed payload; latency from send (or schedule) to the last byte of the echo"
	[ -n "$UDP_RUNS" ] && echo "- udp: echod is -m epoll -w 1 --udp --udp-rate 0 (its UDP path is the same for every model); socat-listen is UDP-LISTEN (one peer), socat is UDP-RECVFROM,fork (a process per datagram)"
	echo
	for n in "${NOTES[@]}"; do echo "- note: $n"; done
	echo
	echo "Figures from a shared machine are noisy; compare servers within one run only."
	echo
}

main() {
	local run t0=$SECONDS
	suite "$SUITE"
	RUN=$OUT/$SUITE-$STAMP
	mkdir -p "$RUN/runs"
	TSV=$RUN.tsv
	: >"$TSV"
	run_floor
	SERVERS=()
	for srv in "${CANDIDATES[@]}"; do available "$srv" && SERVERS+=("$srv"); done
	plotting
	plan
	for run in "${RUNS[@]}"; do run_one "${run%%|*}" "${run#*|}"; done
	if [ "$SUITE" = matrix ]; then
		note "ncat: not run for UDP (not attempted)"
		note "echod-iterative: only the one-connection scenarios (it serves one client at a time)"
	fi
	note "total run time $((SECONDS - t0)) s"
	machine_facts >"$RUN/environment.md"
	$PY "$HERE/report.py" "$RUN" || echo "bench: the report failed; the results are in $TSV" >&2
	cp "$RUN.md" "$OUT/latest-$SUITE.md"
	ln -sfn "$SUITE-$STAMP/report.html" "$OUT/latest.html"
	echo "bench: bench/results/latest.html is $RUN/report.html" >&2
}

main "$@"
