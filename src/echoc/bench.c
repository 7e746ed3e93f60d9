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

#include <arpa/inet.h>
#include <err.h>
#include <errno.h>
#include <netdb.h>
#include <sched.h>
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
	{"cpus", 0, OPT_STR, FIELD(cpus_arg), "LIST", 0, 0, NULL,
	 "pin load thread i to the i-th CPU of LIST (as 0-3,8; round robin when -T is larger), "
	 "so the load's CPUs are known when measuring a pinned server (default: unpinned)"},
	{"busy-poll", 0, OPT_FLAG, FIELD(busy_poll), NULL, 0, 0, NULL,
	 "each worker thread spins instead of sleeping, so a latency figure is the server's, "
	 "not the client's wake-ups; keeps one CPU per thread 100% busy"},
	{"json", 0, OPT_FLAG, FIELD(json), NULL, 0, 0, NULL, "print one JSON object, not a table"},
	{"source", 0, OPT_STR, FIELD(source_arg), "A[-B]", 0, 0, NULL,
	 "TCP: bind each connection to one of these local addresses in turn, numeric: one "
	 "address, or an IPv4 range such as 127.0.0.2-127.0.0.17; the kernel picks a port "
	 "per address, so the ephemeral ports suffice for more connections"},
	{"pings", 0, OPT_NUM, FIELD(pings), "N", 0, 1000000, NULL,
	 "idle: each connection echoes N messages, then stays open and silent (default 0: one "
	 "every 2 s until the end)"},
	{"ping-on-usr1", 0, OPT_FLAG, FIELD(ping_on_usr1), NULL, 0, 0, NULL,
	 "idle: once every connection is up, say so and hold them silent until SIGUSR1, then "
	 "ping (so several echoc can ping once all of them are up)"},
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
	else if ((c->pings || c->ping_on_usr1) && c->mode != MODE_IDLE)
		snprintf(err, errlen, "--%s applies to --mode idle only",
			 c->pings ? "pings" : "ping-on-usr1");
	else if (c->source_arg && c->udp)
		snprintf(err, errlen, "--source applies to TCP, not -u");
	else if (c->mode == MODE_CONNRATE && c->depth > 1)
		snprintf(err, errlen, "--depth applies to pingpong, bulk and idle, not connrate");
	else
		return 0;
	return -EINVAL;
}

/* --cpus: a list of CPUs this process may run on. */
static int parse_cpus(struct bench_cfg *c, char *err, size_t errlen)
{
	char why[128], allowed_s[64];
	struct cpu_list allowed;
	int missing;

	if (!c->cpus_arg)
		return 0;
	if (cpus_parse(c->cpus_arg, &c->cpus, why, sizeof(why)) < 0) {
		snprintf(err, errlen, "--cpus %.64s: %s", c->cpus_arg, why);
		return -EINVAL;
	}
	cpus_allowed(&allowed);
	if (!cpus_within(&c->cpus, &allowed, &missing)) {
		cpus_format(&allowed, allowed_s, sizeof(allowed_s));
		snprintf(err, errlen,
			 "--cpus %.64s: CPU %d is not one this process may run on (%s)",
			 c->cpus_arg, missing, allowed_s);
		return -EINVAL;
	}
	return 0;
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

/* One numeric address of the target's family into *out (port 0); 0 or -EINVAL. */
static int parse_source_addr(const char *s, int family, struct sockaddr_storage *out)
{
	memset(out, 0, sizeof(*out));
	out->ss_family = (sa_family_t)family;
	if (family == AF_INET)
		return inet_pton(AF_INET, s, &((struct sockaddr_in *)out)->sin_addr) == 1 ? 0
											  : -EINVAL;
	return inet_pton(AF_INET6, s, &((struct sockaddr_in6 *)out)->sin6_addr) == 1 ? 0 : -EINVAL;
}

/*
 * --source A or A-B into c->source and c->nsources, in the target's family:
 * a range of IPv4 addresses, or a single address of either family.
 */
static int parse_sources(struct bench_cfg *c, char *err, size_t errlen)
{
	const char *arg = c->source_arg, *dash = strchr(arg, '-');
	int family = c->addr.ss_family;
	char first[INET6_ADDRSTRLEN];
	struct sockaddr_storage lo, hi;
	uint32_t a, b;

	if (family != AF_INET && family != AF_INET6) {
		snprintf(err, errlen, "--source needs an IP target, not a unix socket");
		return -EINVAL;
	}
	if ((dash ? (size_t)(dash - arg) : strlen(arg)) >= sizeof(first))
		goto bad;
	snprintf(first, sizeof(first), "%.*s", dash ? (int)(dash - arg) : (int)strlen(arg), arg);
	if (parse_source_addr(first, family, &lo) < 0 ||
	    (dash && (family != AF_INET || parse_source_addr(dash + 1, family, &hi) < 0)))
		goto bad;
	a = b = ntohl(((struct sockaddr_in *)&lo)->sin_addr.s_addr);
	if (dash)
		b = ntohl(((struct sockaddr_in *)&hi)->sin_addr.s_addr);
	if (family == AF_INET6)
		a = b = 0;
	if (b < a || b - a >= BENCH_MAX_SOURCES)
		goto bad;
	c->source = lo;
	c->nsources = b - a + 1;
	return 0;
bad:
	if (!dash && parse_source_addr(arg, family == AF_INET ? AF_INET6 : AF_INET, &lo) == 0) {
		snprintf(err, errlen, "--source %s: not of the target's family (%s)", arg,
			 family == AF_INET ? "IPv4" : "IPv6");
		return -EINVAL;
	}
	snprintf(err, errlen,
		 "--source %s: expected a numeric %s address%s (at most %d addresses, first to "
		 "last)",
		 arg, family == AF_INET ? "IPv4" : "IPv6",
		 family == AF_INET ? " or a range A-B" : " (ranges are IPv4 only)",
		 BENCH_MAX_SOURCES);
	return -EINVAL;
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
	if (bench_validate(c, err, errlen) < 0 || parse_cpus(c, err, errlen) < 0)
		return OPTS_ERROR;
	if (resolve_target(c, first < argc ? argv[first] : "127.0.0.1", err, errlen) < 0)
		return OPTS_ERROR;
	if (c->source_arg && parse_sources(c, err, errlen) < 0)
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
	if (c->addr.ss_family == AF_UNIX || hi <= lo ||
	    c->conns <= (hi - lo + 1) * (long)(c->nsources ? c->nsources : 1))
		return 0;
	snprintf(err, errlen,
		 "-c %ld: only %ld ephemeral ports (net.ipv4.ip_local_port_range %ld %ld) for "
		 "each of %u source address%s: give more with --source",
		 c->conns, hi - lo + 1, lo, hi, c->nsources ? c->nsources : 1,
		 c->nsources > 1 ? "es" : "");
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
	/* A --source address this host does not have fails here, in one line. */
	rc = bench_bind_source(c, fd, 0);
	if (rc < 0) {
		snprintf(err, errlen, "--source %s: bind: %s", c->source_arg, strerror(-rc));
		close(fd);
		return rc;
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

static volatile sig_atomic_t interrupted, usr1;

static void on_signal(int sig)
{
	if (sig == SIGUSR1)
		usr1 = 1;
	else
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

/* echoc's resident memory in KiB: VmRSS, or the peak where there is no /proc. */
static uint64_t rss_kib(void)
{
	FILE *f = fopen("/proc/self/status", "re");
	char line[128];
	unsigned long long kib = 0;
	struct rusage ru;

	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "VmRSS: %llu kB", &kib) == 1)
			break;
	if (f)
		fclose(f);
	if (!kib && getrusage(RUSAGE_SELF, &ru) == 0)
		kib = (unsigned long long)ru.ru_maxrss;
	return kib;
}

/* When the last worker finished its initial connects; 0 while one has not. */
static uint64_t all_up_ns(struct bench_worker *ws, long nw)
{
	uint64_t last = 0, t;

	for (long i = 0; i < nw; i++) {
		t = atomic_load(&ws[i].up_ns);
		if (!t)
			return 0;
		last = t > last ? t : last;
	}
	return last;
}

/*
 * idle: once every connection is up and has had its first echo verified
 * (or failed), one line on standard error, which a script holding many
 * connections can wait for; the figures of that moment go to idle.
 */
static void idle_milestone(struct bench *b, struct bench_worker *ws, long nw,
			   struct bench_idle *idle)
{
	const struct bench_cfg *c = &b->cfg;
	uint64_t up = all_up_ns(ws, nw);
	struct bench_totals t;

	if (c->mode != MODE_IDLE || idle->rss_kib || !up)
		return;
	bench_snapshot(ws, nw, &t);
	if (c->ping_on_usr1 && !idle->said_up) {
		idle->said_up = true;
		warnx("bench: idle: %llu connections up in %.2f s (%.0f/s), %llu errors; echoc "
		      "RSS %llu KiB; waiting for SIGUSR1 to ping",
		      (unsigned long long)t.open, (double)(up - b->t_start) / 1e9,
		      up > b->t_start ? (double)t.open * 1e9 / (double)(up - b->t_start) : 0.0,
		      (unsigned long long)t.errors, (unsigned long long)rss_kib());
	}
	if (t.verified + t.errors < (uint64_t)c->conns)
		return;
	idle->up = t.open;
	idle->setup_s = (double)(up - b->t_start) / 1e9;
	idle->rss_kib = rss_kib();
	warnx("bench: idle: %llu connections up in %.2f s (%.0f/s), %llu echoed once and "
	      "verified, %llu errors; echoc RSS %llu KiB",
	      (unsigned long long)idle->up, idle->setup_s,
	      idle->setup_s > 0 ? (double)idle->up / idle->setup_s : 0.0,
	      (unsigned long long)t.verified, (unsigned long long)t.errors,
	      (unsigned long long)idle->rss_kib);
}

/*
 * The main thread's part: flips warm-up to measure, prints progress, stops
 * at the end, on a signal or when every connection is gone.  Returns the
 * measured window in seconds and its counters in t.
 */
static double drive(struct bench *b, struct bench_worker *ws, long nw, struct bench_totals *t,
		    struct bench_idle *idle)
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
		if (usr1)
			atomic_store(&b->ping_go, 1);
		idle_milestone(b, ws, nw, idle);
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
	if (c->mode == MODE_IDLE && !idle->rss_kib) { /* stopped before the milestone */
		uint64_t up = all_up_ns(ws, nw);

		idle->up = t->open;
		idle->setup_s = (double)((up ? up : now) - b->t_start) / 1e9;
		idle->rss_kib = rss_kib();
	}
	atomic_store(&b->phase, PHASE_STOP);
	bench_window(t, &start);
	return (double)(now - measure_ns) / 1e9;
}

/*
 * The window's messages are the ones whose latency was recorded: each worker
 * decides that per message, when it sees the phase, while drive()'s
 * snapshots of the shared counters are taken at other instants; a message
 * finishing as the window closed could be in one and not the other, and the
 * report's count must be the histogram's (--hist).  Every message carries
 * --size bytes.
 */
static void window_from_histograms(const struct bench_worker *ws, long nw,
				   const struct bench_cfg *c, struct bench_totals *t)
{
	t->messages = 0;
	for (long i = 0; i < nw; i++)
		t->messages += ws[i].hist.total;
	t->bytes = t->messages * (uint64_t)c->size;
}

/* ---------------------------------------------------------------- main */

/* Starts load thread i, on its --cpus CPU if any, before it runs.  Returns 0 or -errno. */
static int start_worker(const struct cpu_list *cpus, long i, struct bench_worker *w)
{
	pthread_attr_t attr;
	cpu_set_t set;
	int rc;

	if (!cpus->n)
		return -pthread_create(&w->tid, NULL, bench_worker_main, w);
	CPU_ZERO(&set);
	CPU_SET(cpus->cpu[i % cpus->n], &set);
	rc = pthread_attr_init(&attr);
	if (rc == 0)
		rc = pthread_attr_setaffinity_np(&attr, sizeof(set), &set);
	if (rc == 0)
		rc = pthread_create(&w->tid, &attr, bench_worker_main, w);
	pthread_attr_destroy(&attr);
	return -rc;
}

/* Starts the workers with SIGINT and SIGTERM blocked, so only the main thread sees them. */
static int bench_start_workers(struct bench *b, struct bench_worker *ws, long nw)
{
	sigset_t block, old;
	long i;
	int rc = 0;

	sigemptyset(&block);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &block, &old);
	atomic_store(&b->live_workers, (int)nw);
	for (i = 0; i < nw && !rc; i++)
		rc = start_worker(&b->cfg.cpus, i, &ws[i]);
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
	struct bench_idle idle = {0};
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
		if (c->ping_on_usr1)
			sigaction(SIGUSR1, &sa, NULL);
		atomic_store(&b->phase, c->warmup_ms ? PHASE_WARMUP : PHASE_MEASURE);
		b->t_start = clock_now_ns();
		rc = bench_start_workers(b, ws, nw);
	}
	if (rc < 0) {
		warnx("bench: cannot start: %s", strerror(-rc));
		rc = EXIT_FAILURE;
		goto out_free;
	}
	secs = drive(b, ws, nw, &t, &idle);
	for (long i = 0; i < nw; i++)
		pthread_join(ws[i].tid, NULL);
	window_from_histograms(ws, nw, c, &t);
	rc = bench_report_results(c, ws, nw, &t, secs, &idle, hist_out);
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
