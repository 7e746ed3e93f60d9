#!/usr/bin/env bash
# bench/run.sh - echod's models and established echo servers, side by side.
#
# Each server runs pinned to CPU 0 and the load (echoc bench) to CPU 1, one
# fresh server per scenario so memory figures start from a clean process.
# Everything is on loopback with numeric addresses: ncat runs with -n,
# xinetd logs nothing that would make it look up a client, and echoc is
# always given 127.0.0.1, so the run never sends a DNS query.
#
#   bash bench/run.sh            full matrix (under 10 minutes)
#   QUICK=1 bash bench/run.sh    same matrix, shorter runs (under 2 minutes)
#
# Writes bench/results/bench-DATE.md (and .png, .tsv).  Peers that are not
# installed are installed with apt-get when root, else skipped and named in
# the report.
set -uo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
B=${B:-build}
ECHOD=$ROOT/$B/echod
ECHOC=$ROOT/$B/echoc
PY=/usr/bin/python3
LIB="$PY $HERE/lib.py"
OUT=$HERE/results
STAMP=$(date -u +%Y%m%d-%H%M%S)

if [ -n "${QUICK:-}" ]; then
	DUR=0.5 WARM=0.2 IDLE_WARM=0.6 IDLE_CONNS=1000 FORK_IDLE_CONNS=200
else
	DUR=4 WARM=1 IDLE_WARM=2 IDLE_CONNS=5000 FORK_IDLE_CONNS=1000
fi

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

# ---------------------------------------------------------------- peers

need() { # need COMMAND PACKAGE: true when COMMAND exists, installing PACKAGE as root
	command -v "$1" >/dev/null && return 0
	if [ "$(id -u)" = 0 ]; then
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$2" >/dev/null 2>&1
	fi
	command -v "$1" >/dev/null
}

write_xinetd_conf() { # PORT UDP_PORT
	cat >"$TMP/xinetd.conf" <<CONF
# Internal echo only (xinetd finds internal services by name: "echo").  No USERID or HOST logging (either would look the
# client up); the log goes to a file nobody reads.
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
	id              = echo-stream
	socket_type     = stream
	protocol        = tcp
	wait            = no
	user            = root
	bind            = 127.0.0.1
	port            = $1
	log_on_success  =
	log_on_failure  =
}
service echo
{
	type            = INTERNAL UNLISTED
	id              = echo-dgram
	socket_type     = dgram
	protocol        = udp
	wait            = yes
	user            = root
	bind            = 127.0.0.1
	port            = $2
	log_on_success  =
	log_on_failure  =
}
CONF
}

GO_ECHO=
build_go() {
	need go golang-go || return 1
	(cd "$HERE/peers" && GOPROXY=off GOFLAGS= GOCACHE="$TMP/gocache" GOPATH="$TMP/gopath" \
		go build -o "$TMP/echo-go" echo.go) >"$TMP/go-build.log" 2>&1 || return 1
	GO_ECHO=$TMP/echo-go
}

ECHOD_HAS_UDP=
"$ECHOD" --help 2>&1 | grep -q -- '--udp' && ECHOD_HAS_UDP=1

# Which servers run: echod models the probe accepts, peers that are installed.
SERVERS=()
for m in iterative threads epoll uring; do
	if "$ECHOD" -m "$m" -l 127.0.0.1:0 -q --grace 0 >/dev/null 2>"$TMP/probe" &
	then
		p=$!
		for _ in $(seq 100); do grep -q listening "$TMP/probe" && break
			kill -0 $p 2>/dev/null || break; sleep 0.02; done
		if grep -q listening "$TMP/probe"; then SERVERS+=("echod-$m")
		else note "echod -m $m skipped: $(head -1 "$TMP/probe")"; fi
		kill $p 2>/dev/null; wait $p 2>/dev/null
	fi
done
need socat socat && SERVERS+=(socat) || note "socat skipped: not installed, cannot install"
need ncat ncat && SERVERS+=(ncat) || note "ncat skipped: not installed, cannot install"
need xinetd xinetd && SERVERS+=(xinetd) || note "xinetd skipped: not installed, cannot install"
need node nodejs && SERVERS+=(node) || note "node skipped: not installed, cannot install"
build_go && SERVERS+=(go) || note "go skipped: golang-go missing or the build failed"

forks() { # servers that fork a process per connection
	case $1 in socat | ncat | xinetd) return 0 ;; esac
	return 1
}

# Starts server $1 on PORT (and UDP_PORT); ONCE=1 asks echod for --once.
start_server() {
	local name=$1 port=$2 uport=$3 once=$4 cmd
	case $name in
	echod-*)
		cmd=("$ECHOD" -m "${name#echod-}" -l "127.0.0.1:$port" -q --grace 0)
		case ${name#echod-} in epoll | uring) cmd+=(-w 1) ;; esac
		[ "$once" = 1 ] && cmd+=(--once)
		[ -n "$ECHOD_HAS_UDP" ] && cmd+=(--udp) ;;
	socat)
		if [ "$uport" != 0 ]; then
			cmd=(socat "UDP4-RECVFROM:$uport,bind=127.0.0.1,reuseaddr,fork" PIPE)
		else
			cmd=(socat "TCP-LISTEN:$port,bind=127.0.0.1,reuseaddr,fork,backlog=4096" PIPE)
		fi ;;
	ncat) cmd=(ncat -n -l 127.0.0.1 "$port" -k -m 100000 --exec /bin/cat) ;;
	xinetd)
		write_xinetd_conf "$port" "$uport"
		cmd=(xinetd -dontfork -filelog "$TMP/xinetd-own.log" -f "$TMP/xinetd.conf" \
			-pidfile "$TMP/xinetd.pid") ;;
	node) cmd=(node "$HERE/peers/echo.js" "$port" "$uport") ;;
	go) cmd=("$GO_ECHO" -port "$port" -udp "$uport") ;;
	esac
	setsid $PIN_SERVER "${cmd[@]}" </dev/null >"$TMP/server.log" 2>&1 &
	SERVER_PID=$!
}

# ---------------------------------------------------------------- scenarios

# name | echoc arguments | connections | transport
SCENARIOS=(
	"1 conn x 64 B|-c 1 -s 64|1|tcp"
	"50 conns x 128 B|-c 50 -s 128|50|tcp"
	"500 conns x 512 B|-c 500 -s 512 -T 1|500|tcp"
	"50 conns x 64 B, depth 16|-c 50 -s 64 --depth 16|50|tcp"
	"connection rate|--mode connrate -c 4|4|connrate"
	"bulk 4 conns x 64 KiB|--mode bulk -c 4 -s 65536|4|tcp"
	"idle conns|--mode idle -c IDLE|IDLE|idle"
	"udp 4 x 64 B|-u -c 4 -s 64 -t 0.2|4|udp"
)

# Whether server $1 takes part in scenario kind $2 with $3 connections.
applies() {
	case $2 in
	udp)
		case $1 in echod-*) [ -n "$ECHOD_HAS_UDP" ] ;; ncat) return 1 ;; *) return 0 ;; esac
		return ;;
	esac
	# iterative serves one client at a time: only the one-connection runs.
	[ "$1" = echod-iterative ] && [ "$3" != 1 ] && [ "$2" != connrate ] && return 1
	return 0
}

run_one() { # SCENARIO_NAME ARGS CONNS KIND SERVER
	local sc=$1 args=$2 conns=$3 kind=$4 srv=$5 port uport=0 once=0 warm=$WARM extra=() note=""
	port=$($LIB freeport tcp)
	if [ "$kind" = udp ]; then
		uport=$($LIB freeport udp)
		[ "${srv#echod-}" != "$srv" ] && uport=$port
	fi
	if [ "$kind" = connrate ]; then
		case $srv in echod-*) once=1 extra=(--once) note="--once" ;;
		*) note="client closes first" ;; esac
	fi
	if [ "$kind" = idle ]; then
		conns=$IDLE_CONNS
		forks "$srv" && conns=$FORK_IDLE_CONNS && note="forking server: $conns conns"
		args=${args/IDLE/$conns}
		warm=$IDLE_WARM
	fi
	start_server "$srv" "$port" "$uport" "$once"
	if ! $LIB waitport "$([ "$kind" = udp ] && echo udp || echo tcp)" \
		"$([ "$kind" = udp ] && echo "$uport" || echo "$port")" 10; then
		note "$srv did not start for '$sc': $(head -c 200 "$TMP/server.log")"
		stop_server "$SERVER_PID"; SERVER_PID=
		return
	fi
	local target=127.0.0.1:$port
	[ "$kind" = udp ] && target=127.0.0.1:$uport
	read -r _ rss0 _ <<<"$($LIB proc "$SERVER_PID")"
	# Sample the server's CPU where the measured window starts, its memory halfway.
	(
	 sleep "$warm"; $LIB proc "$SERVER_PID" >"$TMP/cpu0"
	 sleep "$(echo "$DUR / 2" | bc -l)"; $LIB proc "$SERVER_PID" >"$TMP/mid") &
	local sampler=$!
	timeout 120 $PIN_LOAD "$ECHOC" bench --json -d "$DUR" --warmup "$warm" $args \
		"${extra[@]}" "$target" >"$TMP/result.json" 2>"$TMP/echoc.err"
	local rc=$?
	wait $sampler
	read -r cpu1 _ _ <<<"$($LIB proc "$SERVER_PID")"
	read -r cpu0 _ _ <"$TMP/cpu0"
	read -r _ rss_mid nprocs <"$TMP/mid"
	stop_server "$SERVER_PID"; SERVER_PID=
	[ $rc != 0 ] && note="$note exit $rc: $(head -1 "$TMP/echoc.err")"
	$LIB row "$TMP/result.json" "$sc" "$srv" "$conns" "$cpu0" "$cpu1" "$rss0" "$rss_mid" \
		"$nprocs" "$note" >>"$TSV"
	tail -1 "$TSV" | cut -f1-5,9- >&2
}

machine_facts() {
	echo "# echod benchmark, $(date -u '+%Y-%m-%d %H:%M UTC')${QUICK:+ (QUICK)}"
	echo
	echo "- CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(nproc) cores"
	echo "- kernel: $(uname -srm)"
	echo "- echod: $(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown)"
	echo "- peers: socat $(socat -V 2>/dev/null | sed -n 2p | awk '{print $3}'), ncat $(ncat --version 2>&1 | awk '{print $3; exit}'), xinetd $(xinetd -version 2>&1 | awk '{print $1; exit}'), node $(node --version 2>/dev/null), $(go version 2>/dev/null | awk '{print $3}')"
	echo "- pinning: server ${PIN_SERVER:-none}, load ${PIN_LOAD:-none}; echod epoll/uring with -w 1 (one CPU)"
	echo "- each run: ${WARM} s warm-up (idle: ${IDLE_WARM} s) then ${DUR} s measured; a fresh server per run"
	echo "- CPU per message: server utime+stime (whole process tree) over the measured window / messages"
	echo "- memory: VmRSS summed over the server's processes halfway through; per connection = (that - before) / connections"
	echo "- MB/s and messages/s count echoed payload; latency from send (or schedule) to the last byte of the echo"
	echo
	for n in "${NOTES[@]}"; do echo "- note: $n"; done
	echo
	echo "Figures from a shared machine are noisy; compare servers within one run only."
	echo
}

main() {
	mkdir -p "$OUT"
	TSV=$OUT/bench-$STAMP.tsv
	: >"$TSV"
	local t0=$SECONDS
	for s in "${SCENARIOS[@]}"; do
		IFS='|' read -r sc args conns kind <<<"$s"
		for srv in "${SERVERS[@]}"; do
			applies "$srv" "$kind" "$conns" || continue
			run_one "$sc" "$args" "$conns" "$kind" "$srv"
		done
	done
	[ -z "$ECHOD_HAS_UDP" ] && note "udp: this echod has no --udp yet; only peers measured"
	note "ncat: not run for UDP (not attempted)"
	note "echod-iterative: only the one-connection scenarios (it serves one client at a time)"
	note "total run time $((SECONDS - t0)) s"
	machine_facts >"$TMP/facts.md"
	$LIB report "$TSV" "$OUT/bench-$STAMP.md" "$OUT/bench-$STAMP.png" "$TMP/facts.md"
	cp "$OUT/bench-$STAMP.md" "$OUT/latest.md"
	echo "bench: wrote $OUT/bench-$STAMP.md" >&2
}

main "$@"
