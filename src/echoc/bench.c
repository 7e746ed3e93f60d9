/*
 * bench.c - "echoc bench": the load generator's options and main thread.
 *
 * -T worker threads (bench_worker.c) each run one epoll loop over their
 * share of the connections.  The main thread only parses, checks that the
 * run can start (descriptors, ports, a server that answers), starts the
 * workers, flips the phase (warm-up, measure, stop), prints a progress
 * line a second on a terminal and the results at the end.
 *
 * The target is resolved once, numerically unless the user typed a name;
 * the default is 127.0.0.1, so a benchmark never sends a DNS query.
 */
#include "bench.h"

#include "bench_worker.h"
#include "clock.h"
#include "net.h"
#include "opts.h"

#include <err.h>
#include <errno.h>
#include <netdb.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#define IDLE_PERIOD_MS 2000 /* each idle connection echoes once per period */

/* ---------------------------------------------------------------- options */

#define FIELD(member) offsetof(struct bench_cfg, member)

static const struct opt bench_opts[] = {
	{"mode", 0, OPT_CHOICE, FIELD(mode_name), "MODE", 0, 0, "pingpong|connrate|bulk|idle",
	 "pingpong | connrate | bulk | idle (default pingpong)"},
	{"conns", 'c', OPT_NUM, FIELD(conns), "N", 1, 1000000, NULL,
	 "connections (default 1; idle: 100)"},
	{"size", 's', OPT_NUM, FIELD(size), "BYTES", 1, 64 << 20, NULL,
	 "message size (default 64; bulk: 65536; idle: 16; -u: at least 16)"},
	{"depth", 0, OPT_NUM, FIELD(depth), "N", 1, 65536, NULL,
	 "messages in flight per connection (default 1; bulk: 16)"},
	{"duration", 'd', OPT_SECONDS, FIELD(duration_ms), "S", 0, 86400, NULL,
	 "measure for S seconds (default 10)"},
	{"warmup", 0, OPT_SECONDS, FIELD(warmup_ms), "S", 0, 3600, NULL,
	 "run S seconds before measuring; excluded from every figure (default 0)"},
	{"threads", 'T', OPT_NUM, FIELD(threads), "N", 1, 1024, NULL,
	 "worker threads, one epoll loop each (default 1)"},
	{"udp", 'u', OPT_FLAG, FIELD(udp), NULL, 0, 0, NULL,
	 "UDP ping-pong: count loss, duplicates and reordering"},
	{"rate", 0, OPT_NUM, FIELD(rate), "N", 0, 100000000, NULL,
	 "send N messages/s in total on a fixed schedule, latency counted from the scheduled "
	 "time (0 = as fast as possible; idle: one per connection every 2 s)"},
	{"once", 0, OPT_FLAG, FIELD(once), NULL, 0, 0, NULL,
	 "connrate: expect the server to close first, after the echo (echod --once)"},
	{"timeout", 't', OPT_SECONDS, FIELD(timeout_ms), "S", 0, 3600, NULL,
	 "a connection making no progress for S seconds is an error; a datagram unanswered for S "
	 "seconds is lost (default 5; -u: 1)"},
	{"busy-poll", 0, OPT_FLAG, FIELD(busy_poll), NULL, 0, 0, NULL,
	 "each worker thread spins instead of sleeping, so a latency figure is the server's, "
	 "not the client's wake-ups; keeps one CPU per thread 100% busy"},
	{"json", 0, OPT_FLAG, FIELD(json), NULL, 0, 0, NULL, "print one JSON object, not a table"},
	{"hist", 0, OPT_STR, FIELD(hist_path), "FILE", 0, 0, NULL,
	 "write the latency distribution (microseconds) in HdrHistogram's text format"},
	{"help", 'h', OPT_HELP, 0, NULL, 0, 0, NULL, "print this help and exit"},
};

const char *const bench_mode_names[] = {"pingpong", "connrate", "bulk", "idle"};

static void bench_usage(FILE *out)
{
	fprintf(out, "usage: echoc bench [options] [HOST][:PORT]\n"
		     "Load an echo server and verify every echoed byte.  HOST:PORT defaults to\n"
		     "127.0.0.1:7127; give addresses numerically so nothing is resolved.\n\n");
	opts_usage(bench_opts, OPTS_COUNT(bench_opts), out);
}

static void apply_mode_defaults(struct bench_cfg *c)
{
	for (size_t i = 0; i < sizeof(bench_mode_names) / sizeof(bench_mode_names[0]); i++)
		if (!strcmp(c->mode_name, bench_mode_names[i]))
			c->mode = (enum bench_mode)i;
	if (!c->conns)
		c->conns = c->mode == MODE_IDLE ? 100 : 1;
	if (!c->size)
		c->size = c->mode == MODE_BULK ? 65536 : c->mode == MODE_IDLE ? 16 : 64;
	if (!c->depth)
		c->depth = c->mode == MODE_BULK ? 16 : 1;
	if (!c->threads)
		c->threads = 1;
	if (c->threads > c->conns)
		c->threads = c->conns;
	if (!c->timeout_ms)
		c->timeout_ms = c->udp ? 1000 : 5000;
	if (c->duration_ms < 0)
		c->duration_ms = 10000;
	if (c->mode == MODE_IDLE && !c->rate)
		c->rate = (c->conns * 1000 + IDLE_PERIOD_MS - 1) / IDLE_PERIOD_MS;
}

/* Clashes between options, nc style: one line naming them. */
static int bench_validate(const struct bench_cfg *c, char *err, size_t errlen)
{
	if (c->duration_ms == 0)
		snprintf(err, errlen, "--duration must be more than 0 seconds");
	else if (c->udp && c->mode != MODE_PINGPONG)
		snprintf(err, errlen, "-u works in pingpong mode only, not %s", c->mode_name);
	else if (c->udp && (c->size < BENCH_UDP_HEADER || c->size > NET_UDP_MAX_PAYLOAD4))
		snprintf(err, errlen, "--size %ld: must be %d to %d with -u", c->size,
			 BENCH_UDP_HEADER, NET_UDP_MAX_PAYLOAD4);
	else if (c->once && c->mode != MODE_CONNRATE)
		snprintf(err, errlen, "--once applies to --mode connrate only");
	else if (c->rate && (c->mode == MODE_CONNRATE || c->mode == MODE_BULK))
		snprintf(err, errlen, "--rate applies to pingpong and idle, not %s", c->mode_name);
	else if (c->mode == MODE_CONNRATE && c->depth > 1)
		snprintf(err, errlen, "--depth applies to pingpong, bulk and idle, not connrate");
	else
		return 0;
	return -EINVAL;
}

/* Resolves the target once; numerically unless the user typed a name. */
static int resolve_target(struct bench_cfg *c, const char *arg, char *err, size_t errlen)
{
	struct addrinfo hints = {.ai_socktype = c->udp ? SOCK_DGRAM : SOCK_STREAM};
	struct net_addr a;
	struct addrinfo *res;
	char port[8];
	int rc;

	if (net_parse_addr(arg, NET_DEFAULT_PORT, &a, err, errlen) < 0)
		return -EINVAL;
	if (a.is_unix) {
		struct sockaddr_un *sun = (struct sockaddr_un *)&c->addr;

		if (c->udp) {
			snprintf(err, errlen, "%s: -u needs an IP address", arg);
			return -EINVAL;
		}
		sun->sun_family = AF_UNIX;
		strcpy(sun->sun_path, a.path);
		c->addrlen = sizeof(*sun);
		snprintf(c->target, sizeof(c->target), "%s", a.path);
		return 0;
	}
	snprintf(port, sizeof(port), "%u", a.port);
	hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
	rc = getaddrinfo(a.host[0] ? a.host : "127.0.0.1", port, &hints, &res);
	if (rc == EAI_NONAME) {
		hints.ai_flags = AI_NUMERICSERV; /* the user typed a name: resolve it, once */
		rc = getaddrinfo(a.host, port, &hints, &res);
	}
	if (rc) {
		snprintf(err, errlen, "resolve %.100s: %s", a.host, gai_strerror(rc));
		return -EADDRNOTAVAIL;
	}
	memcpy(&c->addr, res->ai_addr, res->ai_addrlen);
	c->addrlen = res->ai_addrlen;
	freeaddrinfo(res);
	net_format_sockaddr((struct sockaddr *)&c->addr, c->addrlen, c->target, sizeof(c->target));
	return 0;
}

static enum opts_result bench_parse_args(struct bench_cfg *c, int argc, char **argv, char *err,
					 size_t errlen)
{
	enum opts_result res;
	int first;

	memset(c, 0, sizeof(*c));
	c->mode_name = "pingpong";
	c->duration_ms = -1;
	res = opts_parse(bench_opts, OPTS_COUNT(bench_opts), c, argc, argv, false, &first, err,
			 errlen);
	if (res != OPTS_OK)
		return res;
	if (argc - first > 1) {
		snprintf(err, errlen, "unexpected argument \"%s\"", argv[first + 1]);
		return OPTS_ERROR;
	}
	apply_mode_defaults(c);
	if (bench_validate(c, err, errlen) < 0)
		return OPTS_ERROR;
	if (resolve_target(c, first < argc ? argv[first] : "127.0.0.1", err, errlen) < 0)
		return OPTS_ERROR;
	return OPTS_OK;
}

/* ---------------------------------------------------------------- setup */

/* Raises the descriptor limit to the hard limit; fails if -c cannot fit. */
static int raise_nofile(long conns, char *err, size_t errlen)
{
	struct rlimit rl;
	rlim_t need = (rlim_t)conns + 64;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return -errno;
	rl.rlim_cur = rl.rlim_max;
	setrlimit(RLIMIT_NOFILE, &rl);
	if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < need) {
		snprintf(err, errlen,
			 "-c %ld needs about %llu file descriptors, the hard limit is %llu "
			 "(ulimit -Hn)",
			 conns, (unsigned long long)need, (unsigned long long)rl.rlim_max);
		return -EMFILE;
	}
	return 0;
}

/* Fails when -c connections cannot each get an ephemeral port. */
static int check_ports(const struct bench_cfg *c, char *err, size_t errlen)
{
	FILE *f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r");
	long lo, hi;

	if (!f)
		return 0;
	if (fscanf(f, "%ld %ld", &lo, &hi) != 2)
		lo = hi = 0;
	fclose(f);
	if (c->addr.ss_family == AF_UNIX || hi <= lo || c->conns <= hi - lo + 1)
		return 0;
	snprintf(err, errlen,
		 "-c %ld: only %ld ephemeral ports (net.ipv4.ip_local_port_range %ld %ld) for "
		 "one source address",
		 c->conns, hi - lo + 1, lo, hi);
	return -EADDRNOTAVAIL;
}

/*
 * One connection (TCP) or one echoed datagram (UDP) before the run, so an
 * absent server costs one line and exit status 1, not a flood of errors.
 * The UDP socket is kept in b->probe_fd for connection 0: a probe from a
 * port of its own would look like a second peer to the server.
 */
static int probe_server(struct bench *b, char *err, size_t errlen)
{
	const struct bench_cfg *c = &b->cfg;
	int fd = bench_socket(c), rc = 0;

	if (fd < 0) {
		snprintf(err, errlen, "socket: %s", bench_explain(-fd));
		return fd;
	}
	if (connect(fd, (struct sockaddr *)&c->addr, c->addrlen) < 0 && errno != EINPROGRESS)
		rc = -errno;
	if (!rc)
		rc = c->udp ? bench_udp_probe(fd, c) : bench_tcp_probe(fd, c);
	if (rc < 0)
		snprintf(err, errlen, "%s %s: %s", c->udp ? "udp echo from" : "connect", c->target,
			 rc == -ETIMEDOUT && c->udp ? "no answer" : strerror(-rc));
	if (rc == 0 && c->udp)
		b->probe_fd = fd;
	else
		close(fd);
	return rc;
}

/* ---------------------------------------------------------------- the run */

static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
	(void)sig;
	interrupted = 1;
}

static void sleep_until(uint64_t t)
{
	uint64_t now = clock_now_ns();
	struct timespec ts;

	if (t <= now)
		return;
	ts.tv_sec = (time_t)((t - now) / 1000000000u);
	ts.tv_nsec = (long)((t - now) % 1000000000u);
	nanosleep(&ts, NULL); /* a signal cuts it short, as it should */
}

/*
 * The main thread's part: flips warm-up to measure, prints progress, stops
 * at the end, on a signal or when every connection is gone.  Returns the
 * measured window in seconds and its counters in t.
 */
static double drive(struct bench *b, struct bench_worker *ws, long nw, struct bench_totals *t)
{
	const struct bench_cfg *c = &b->cfg;
	uint64_t t0 = clock_now_ns(), t_measure = t0 + (uint64_t)c->warmup_ms * 1000000u;
	uint64_t t_end = t_measure + (uint64_t)c->duration_ms * 1000000u, measure_ns = t0;
	uint64_t tick = t0 + 1000000000u, now, msgs = 0, bytes = 0, wake;
	bool tty = isatty(STDERR_FILENO);
	struct bench_totals start = {0};

	while (!interrupted && atomic_load(&b->live_workers) > 0 &&
	       (now = clock_now_ns()) < t_end) {
		if (atomic_load(&b->phase) == PHASE_WARMUP && now >= t_measure) {
			bench_snapshot(ws, nw, &start);
			measure_ns = now;
			atomic_store(&b->phase, PHASE_MEASURE);
		}
		if (now >= tick) {
			if (tty)
				bench_progress(ws, nw, c, now - t0, &msgs, &bytes);
			tick += 1000000000u;
		}
		wake = tick < t_end ? tick : t_end;
		if (atomic_load(&b->phase) == PHASE_WARMUP && t_measure < wake)
			wake = t_measure;
		sleep_until(wake < now + 100000000u ? wake : now + 100000000u);
	}
	now = clock_now_ns();
	if (atomic_load(&b->phase) == PHASE_WARMUP) {
		bench_snapshot(ws, nw, &start); /* stopped during the warm-up: nothing measured */
		measure_ns = now;
	}
	bench_snapshot(ws, nw, t);
	atomic_store(&b->phase, PHASE_STOP);
	bench_window(t, &start);
	return (double)(now - measure_ns) / 1e9;
}

/* ---------------------------------------------------------------- main */

/* Starts the workers with SIGINT and SIGTERM blocked, so only the main thread sees them. */
static int bench_start_workers(struct bench *b, struct bench_worker *ws, long nw)
{
	sigset_t block, old;
	long i;
	int rc = 0;

	sigemptyset(&block);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &block, &old);
	atomic_store(&b->live_workers, (int)nw);
	for (i = 0; i < nw && !rc; i++)
		rc = -pthread_create(&ws[i].tid, NULL, bench_worker_main, &ws[i]);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc) {
		atomic_store(&b->phase, PHASE_STOP);
		atomic_fetch_sub(&b->live_workers, (int)(nw - i + 1));
		for (long j = 0; j < i - 1; j++)
			pthread_join(ws[j].tid, NULL);
	}
	return rc;
}

static int bench_run(struct bench *b, FILE *hist_out)
{
	const struct bench_cfg *c = &b->cfg;
	long nw = c->threads;
	struct bench_worker *ws = calloc((size_t)nw, sizeof(*ws));
	struct sigaction sa = {.sa_handler = on_signal};
	struct bench_totals t;
	double secs;
	int rc = -ENOMEM;

	for (long i = 0; ws && i < nw; i++)
		ws[i].epfd = -1;
	for (long i = 0; ws && i < nw; i++) {
		uint32_t first = (uint32_t)(c->conns * i / nw);

		rc = bench_worker_init(&ws[i], b, first,
				       (uint32_t)(c->conns * (i + 1) / nw) - first);
		if (rc < 0)
			break;
	}
	if (rc == 0) {
		sigaction(SIGINT, &sa, NULL);
		sigaction(SIGTERM, &sa, NULL);
		atomic_store(&b->phase, c->warmup_ms ? PHASE_WARMUP : PHASE_MEASURE);
		rc = bench_start_workers(b, ws, nw);
	}
	if (rc < 0) {
		warnx("bench: cannot start: %s", strerror(-rc));
		rc = EXIT_FAILURE;
		goto out_free;
	}
	secs = drive(b, ws, nw, &t);
	for (long i = 0; i < nw; i++)
		pthread_join(ws[i].tid, NULL);
	rc = bench_report_results(c, ws, nw, &t, secs, hist_out);
	hist_out = NULL;
out_free:
	for (long i = 0; ws && i < nw; i++)
		bench_worker_free(&ws[i]);
	free(ws);
	if (hist_out)
		fclose(hist_out);
	return rc;
}

/* Everything that can stop the run before it starts: one line, exit status 1. */
static int preflight(struct bench *b, FILE **hist_out, char *err, size_t errlen)
{
	const struct bench_cfg *c = &b->cfg;

	if (raise_nofile(c->conns, err, errlen) < 0 || check_ports(c, err, errlen) < 0 ||
	    probe_server(b, err, errlen) < 0)
		return -1;
	if (c->hist_path && !(*hist_out = fopen(c->hist_path, "w"))) {
		snprintf(err, errlen, "--hist %s: %s", c->hist_path, strerror(errno));
		return -1;
	}
	return 0;
}

int bench_main(int argc, char **argv)
{
	char err[CONFIG_ERRLEN];
	struct bench *b = calloc(1, sizeof(*b));
	FILE *hist_out = NULL;
	int rc;

	if (!b)
		return EXIT_FAILURE;
	b->probe_fd = -1;
	switch (bench_parse_args(&b->cfg, argc, argv, err, sizeof(err))) {
	case OPTS_HELP:
	case OPTS_VERSION:
		bench_usage(stdout);
		rc = EXIT_SUCCESS;
		break;
	case OPTS_ERROR:
		warnx("bench: %s", err);
		rc = EXIT_USAGE;
		break;
	default:
		if (preflight(b, &hist_out, err, sizeof(err)) < 0) {
			warnx("bench: %s", err);
			rc = EXIT_FAILURE;
			break;
		}
		rc = bench_run(b, hist_out);
	}
	if (b->probe_fd >= 0) /* the workers never started */
		close(b->probe_fd);
	free(b);
	return rc;
}
