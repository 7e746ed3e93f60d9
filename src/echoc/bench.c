/*
 * bench.c - "echoc bench": the load generator.
 *
 * -T worker threads each run one epoll(2) loop over their share of the
 * connections (level-triggered; EPOLLOUT armed only while a send is short).
 * The main thread only starts the workers, flips the phase (warm-up,
 * measure, stop), prints a progress line a second on a terminal and the
 * results at the end.  Nothing is shared between workers but the phase and
 * their counters (relaxed atomics, read by the progress line); each has its
 * own histogram, merged after the join.
 *
 * TCP streams are verified byte by byte against bench_fill()'s pattern, so a
 * corrupted, lost, duplicated or reordered byte is a mismatch.  UDP
 * datagrams carry the connection and a sequence number: loss, duplicates and
 * reordering are counted, and a datagram is declared lost after --timeout,
 * so nothing is ever waited on forever.
 *
 * With --rate, sends follow a fixed schedule and latency counts from the
 * scheduled time, not from the moment the send happened: a server that
 * stalls cannot hide the wait of the messages queued behind the stall
 * (coordinated omission).
 *
 * The target is resolved once, numerically unless the user typed a name;
 * the default is 127.0.0.1, so a benchmark never sends a DNS query.
 */
#include "bench.h"

#include "clock.h"
#include "opts.h"
#include "hist.h"
#include "net.h"

#include <errno.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

enum { EXIT_OK = 0, EXIT_FAIL = 1, EXIT_USAGE = 2 };

#define BUF_BYTES      (256 * 1024) /* per worker: one send or recv batch */
#define CONNECT_BATCH  256	    /* connects in flight per worker: spare the SYN backlog */
#define SWEEP_NS       (100 * 1000000ull)
#define UDP_SWEEP_NS   (10 * 1000000ull)
#define UDP_HEADER     16 /* u32 connection, u32 zero, u64 sequence */
#define UDP_PROBE_ID   UINT32_MAX /* the connection field of the probe datagram */
#define UDP_MAX_SIZE   65507
#define IDLE_PERIOD_MS 2000 /* each idle connection echoes once per period */
#define REPORT_LINES   5    /* error lines printed per kind; the rest are counted */
#define MAX_EVENTS     256

enum mode { MODE_PINGPONG, MODE_CONNRATE, MODE_BULK, MODE_IDLE };
enum phase { PHASE_WARMUP, PHASE_MEASURE, PHASE_STOP };
enum cstate { CS_IDLE, CS_CONNECTING, CS_RUNNING, CS_DRAINING, CS_BACKOFF, CS_DEAD };
enum slot_state { SLOT_FREE, SLOT_PENDING, SLOT_ANSWERED, SLOT_LOST };

/* The command line, filled from bench_opts[]. */
struct bench_cfg {
	const char *mode_name;
	long conns, size, depth, threads, rate;
	long duration_ms, warmup_ms, timeout_ms;
	bool udp, once, json;
	const char *hist_path;
	enum mode mode;
	struct sockaddr_storage addr;
	socklen_t addrlen;
	char target[NET_NAMELEN];
};

/* Counters a worker bumps and the main thread reads while it runs. */
struct counters {
	_Atomic uint64_t messages, bytes, errors, mismatches, timeouts;
	_Atomic uint64_t sent, lost, duplicates, reordered, late, open;
};

struct bench {
	struct bench_cfg cfg;
	int probe_fd; /* -u: the probed socket, which connection 0 goes on with */
	_Atomic int phase;
	_Atomic int live_workers;
	_Atomic unsigned error_lines, mismatch_lines;
};

/* One connection (or, with -u, one connected UDP socket). */
struct bconn {
	int fd;
	enum cstate st;
	uint32_t id;	    /* unique in the run */
	uint32_t gen;	    /* connections this slot has made (connrate) */
	uint64_t started;   /* messages begun: stamped, maybe not yet all sent */
	uint64_t done;	    /* messages fully echoed */
	uint64_t tx_bytes;  /* bytes written to the stream */
	uint64_t rx_bytes;  /* bytes of echo verified */
	uint64_t last_ns;   /* last progress, for --timeout */
	uint64_t t_connect; /* when the connect began */
	uint64_t *stamp;    /* depth slots: the time each message's latency counts from */
	/* UDP only, depth slots each. */
	uint64_t *udp_seq, *udp_sent;
	uint8_t *udp_state;
	uint64_t udp_high; /* highest sequence answered, plus one */
	bool out_armed;
};

/* Fixed-rate schedule: the worker's j-th send is due at start + j * step. */
struct pacer {
	bool on;
	uint64_t start_ns;
	double step_ns;
	uint64_t next; /* the next j to hand out */
};

struct worker {
	struct bench *b;
	const struct bench_cfg *cfg;
	pthread_t tid;
	int epfd;
	struct bconn *conns;
	uint32_t n;
	uint32_t next_connect; /* initial connects not yet begun start here */
	uint32_t connecting;
	uint32_t alive;
	struct pacer pace;
	struct hist hist;
	struct counters ct;
	uint8_t *buf;
	uint64_t next_sweep;
};

/* ---------------------------------------------------------------- pattern */

static uint64_t mix64(uint64_t x)
{
	/* splitmix64's finaliser: every input bit flips half the output. */
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

/* Bytes [i, i + len) of message m. */
static void fill_message(uint8_t *buf, size_t len, uint64_t key, uint64_t m, uint64_t i)
{
	uint64_t base = mix64(mix64(key) ^ m), word = 0, w = UINT64_MAX;

	for (size_t j = 0; j < len; j++, i++) {
		if ((i & 7) == 0 && len - j >= 8) {
			word = mix64(base + (i >> 3));
			for (unsigned k = 0; k < 8; k++)
				buf[j + k] = (uint8_t)(word >> (8 * k));
			w = i >> 3;
			j += 7;
			i += 7;
			continue;
		}
		if ((i >> 3) != w) {
			w = i >> 3;
			word = mix64(base + w);
		}
		buf[j] = (uint8_t)(word >> (8 * (i & 7)));
	}
}

void bench_fill(uint8_t *buf, size_t len, uint64_t key, uint64_t off, size_t size)
{
	while (len > 0) {
		uint64_t m = off / size, i = off % size;
		size_t n = size - i < len ? (size_t)(size - i) : len;

		fill_message(buf, n, key, m, i);
		buf += n;
		off += n;
		len -= n;
	}
}

size_t bench_verify(const uint8_t *buf, size_t len, uint64_t key, uint64_t off, size_t size)
{
	uint8_t want[4096];
	size_t done = 0;

	while (done < len) {
		size_t n = len - done < sizeof(want) ? len - done : sizeof(want);

		bench_fill(want, n, key, off + done, size);
		if (memcmp(want, buf + done, n)) {
			for (size_t i = 0; i < n; i++)
				if (want[i] != buf[done + i])
					return done + i;
		}
		done += n;
	}
	return len;
}

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
	{"json", 0, OPT_FLAG, FIELD(json), NULL, 0, 0, NULL, "print one JSON object, not a table"},
	{"hist", 0, OPT_STR, FIELD(hist_path), "FILE", 0, 0, NULL,
	 "write the latency distribution (microseconds) in HdrHistogram's text format"},
	{"help", 'h', OPT_HELP, 0, NULL, 0, 0, NULL, "print this help and exit"},
};

#define NOPTS (sizeof(bench_opts) / sizeof(bench_opts[0]))

static const char *const mode_names[] = {"pingpong", "connrate", "bulk", "idle"};

static void bench_usage(FILE *out)
{
	fprintf(out, "usage: echoc bench [options] [HOST][:PORT]\n"
		     "Load an echo server and verify every echoed byte.  HOST:PORT defaults to\n"
		     "127.0.0.1:7127; give addresses numerically so nothing is resolved.\n\n");
	opts_usage(bench_opts, NOPTS, out);
}

static void apply_mode_defaults(struct bench_cfg *c)
{
	for (size_t i = 0; i < sizeof(mode_names) / sizeof(mode_names[0]); i++)
		if (!strcmp(c->mode_name, mode_names[i]))
			c->mode = (enum mode)i;
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
static int validate(const struct bench_cfg *c, char *err, size_t errlen)
{
	if (c->duration_ms == 0)
		snprintf(err, errlen, "--duration must be more than 0 seconds");
	else if (c->udp && c->mode != MODE_PINGPONG)
		snprintf(err, errlen, "-u works in pingpong mode only, not %s", c->mode_name);
	else if (c->udp && (c->size < UDP_HEADER || c->size > UDP_MAX_SIZE))
		snprintf(err, errlen, "--size %ld: must be %d to %d with -u", c->size, UDP_HEADER,
			 UDP_MAX_SIZE);
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

static enum opts_result parse_args(struct bench_cfg *c, int argc, char **argv, char *err,
				   size_t errlen)
{
	enum opts_result res;
	int first;

	memset(c, 0, sizeof(*c));
	c->mode_name = "pingpong";
	c->duration_ms = -1;
	res = opts_parse(bench_opts, NOPTS, c, argc, argv, false, &first, err, errlen);
	if (res != OPTS_OK)
		return res;
	if (argc - first > 1) {
		snprintf(err, errlen, "unexpected argument \"%s\"", argv[first + 1]);
		return OPTS_ERROR;
	}
	apply_mode_defaults(c);
	if (validate(c, err, errlen) < 0)
		return OPTS_ERROR;
	if (resolve_target(c, first < argc ? argv[first] : "127.0.0.1", err, errlen) < 0)
		return OPTS_ERROR;
	return OPTS_OK;
}

/* ---------------------------------------------------------------- reports */

/* Why a socket or connect failed, with what the user can do about it. */
static const char *explain(int e)
{
	switch (e) {
	case EMFILE:
		return "out of file descriptors (RLIMIT_NOFILE): lower -c or raise ulimit -Hn";
	case ENFILE:
		return "the system is out of file descriptors (fs.file-max)";
	case EADDRNOTAVAIL:
		return "out of ephemeral ports (net.ipv4.ip_local_port_range, TIME_WAIT): lower "
		       "-c or the connection rate";
	default:
		return strerror(e);
	}
}

/* One line per error, the first REPORT_LINES of each kind; the rest are counted. */
static void report(_Atomic unsigned *lines, const struct bconn *c, const char *fmt, ...)
{
	char msg[256];
	va_list ap;

	if (atomic_fetch_add_explicit(lines, 1, memory_order_relaxed) >= REPORT_LINES)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fprintf(stderr, "echoc: bench: connection %u: %s\n", c->id, msg);
}

static void count(_Atomic uint64_t *ctr, uint64_t n)
{
	atomic_fetch_add_explicit(ctr, n, memory_order_relaxed);
}

static uint64_t load(_Atomic uint64_t *ctr)
{
	return atomic_load_explicit(ctr, memory_order_relaxed);
}

static int phase(const struct worker *w)
{
	return atomic_load_explicit(&w->b->phase, memory_order_relaxed);
}

/* ---------------------------------------------------------------- connections */

static uint64_t conn_key(const struct bconn *c)
{
	return (uint64_t)c->id << 32 | c->gen;
}

static void set_events(struct worker *w, struct bconn *c, uint32_t ev, int op)
{
	struct epoll_event e = {.events = ev, .data.ptr = c};

	epoll_ctl(w->epfd, op, c->fd, &e);
}

static void arm_out(struct worker *w, struct bconn *c, bool on)
{
	if (c->out_armed == on)
		return;
	c->out_armed = on;
	set_events(w, c, EPOLLIN | (on ? EPOLLOUT : 0), EPOLL_CTL_MOD);
}

static void close_conn(struct worker *w, struct bconn *c)
{
	if (c->fd < 0)
		return;
	if (c->st == CS_RUNNING || c->st == CS_DRAINING)
		atomic_fetch_sub_explicit(&w->ct.open, 1, memory_order_relaxed);
	if (c->st == CS_CONNECTING)
		w->connecting--;
	close(c->fd);
	c->fd = -1;
}

static void start_connect(struct worker *w, struct bconn *c);

/*
 * Ends a connection after a failure.  connrate slots retry at the next
 * sweep; other modes lose the connection for the rest of the run.
 */
static void fail_conn(struct worker *w, struct bconn *c)
{
	close_conn(w, c);
	if (w->cfg->mode == MODE_CONNRATE) {
		c->st = CS_BACKOFF;
		return;
	}
	c->st = CS_DEAD;
	w->alive--;
}

static void conn_error(struct worker *w, struct bconn *c, const char *what, int e)
{
	count(&w->ct.errors, 1);
	report(&w->b->error_lines, c, "%s: %s", what, explain(e));
	fail_conn(w, c);
}

/* Starts the initial connects, at most CONNECT_BATCH in flight. */
static void connect_more(struct worker *w)
{
	while (w->next_connect < w->n && w->connecting < CONNECT_BATCH && phase(w) != PHASE_STOP)
		start_connect(w, &w->conns[w->next_connect++]);
}

static int new_socket(const struct bench_cfg *cfg)
{
	int one = 1, type = cfg->udp ? SOCK_DGRAM : SOCK_STREAM;
	int fd = socket(cfg->addr.ss_family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -errno;
	/* Ping-pong of small messages measures the server, not Nagle's delay. */
	if (!cfg->udp && cfg->addr.ss_family != AF_UNIX)
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return fd;
}

static void on_connected(struct worker *w, struct bconn *c);

static void start_connect(struct worker *w, struct bconn *c)
{
	const struct bench_cfg *cfg = w->cfg;
	int fd = new_socket(cfg);

	c->t_connect = clock_now_ns();
	if (fd < 0) {
		c->fd = -1;
		c->st = CS_IDLE;
		conn_error(w, c, "socket", -fd);
		return;
	}
	c->fd = fd;
	c->out_armed = true;
	set_events(w, c, EPOLLIN | EPOLLOUT, EPOLL_CTL_ADD);
	if (connect(fd, (struct sockaddr *)&cfg->addr, cfg->addrlen) == 0) {
		c->st = CS_CONNECTING;
		w->connecting++;
		on_connected(w, c);
		return;
	}
	if (errno != EINPROGRESS) {
		c->st = CS_IDLE;
		conn_error(w, c, "connect", errno);
		return;
	}
	c->st = CS_CONNECTING;
	w->connecting++;
}

/* ---------------------------------------------------------------- sending */

/* The time the k-th message of c is due on the fixed-rate schedule. */
static uint64_t due_time(const struct worker *w, const struct bconn *c, uint64_t k)
{
	uint64_t j = k * w->n + (uint64_t)(c - w->conns);

	return w->pace.start_ns + (uint64_t)((double)j * w->pace.step_ns);
}

/*
 * Whether c may begin another message now.  On success *from is the time
 * its latency counts from: the schedule's, with --rate.
 */
static bool may_start(const struct worker *w, const struct bconn *c, uint64_t now, uint64_t *from)
{
	const struct bench_cfg *cfg = w->cfg;

	if (phase(w) == PHASE_STOP || c->started - c->done >= (uint64_t)cfg->depth)
		return false;
	if (cfg->mode == MODE_CONNRATE) {
		*from = c->t_connect;
		return c->started == 0;
	}
	if (!w->pace.on) {
		*from = now;
		return true;
	}
	*from = due_time(w, c, c->started);
	return w->pace.step_ns > 0 && *from <= now;
}

/* Stamps new messages and fills buf with what the stream owes; returns the length. */
static size_t build_tx(struct worker *w, struct bconn *c, uint64_t now)
{
	uint64_t size = (uint64_t)w->cfg->size, from;

	while (c->started * size - c->tx_bytes < BUF_BYTES && may_start(w, c, now, &from)) {
		if (c->started == c->done)
			c->last_ns = now; /* the timeout runs while something is in flight */
		c->stamp[c->started % (uint64_t)w->cfg->depth] = from;
		c->started++;
	}
	size = c->started * size - c->tx_bytes;
	if (size > BUF_BYTES)
		size = BUF_BYTES;
	bench_fill(w->buf, (size_t)size, conn_key(c), c->tx_bytes, (size_t)w->cfg->size);
	return (size_t)size;
}

static void tcp_send(struct worker *w, struct bconn *c, uint64_t now)
{
	size_t len;
	ssize_t n;

	while ((len = build_tx(w, c, now)) > 0) {
		n = send(c->fd, w->buf, len, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		if (n < 0) {
			conn_error(w, c, "send", errno);
			return;
		}
		c->tx_bytes += (uint64_t)n;
		if ((size_t)n < len)
			break;
	}
	arm_out(w, c, len > 0);
}

/* ---------------------------------------------------------------- receiving */

static bool measuring(const struct worker *w)
{
	return phase(w) == PHASE_MEASURE;
}

/* Counts one echoed message; its latency only while measuring. */
static void record(struct worker *w, uint64_t from, uint64_t now)
{
	if (measuring(w))
		hist_record(&w->hist, now > from ? now - from : 0);
	count(&w->ct.messages, 1);
	count(&w->ct.bytes, (uint64_t)w->cfg->size);
}

static void mismatch(struct worker *w, struct bconn *c, uint64_t off, uint8_t got)
{
	uint8_t want;
	uint64_t size = (uint64_t)w->cfg->size;

	bench_fill(&want, 1, conn_key(c), off, (size_t)size);
	count(&w->ct.mismatches, 1);
	report(&w->b->mismatch_lines, c,
	       "mismatch in message %llu at byte %llu: expected 0x%02x, got 0x%02x",
	       (unsigned long long)(off / size), (unsigned long long)(off % size), want, got);
}

/* connrate: the connection's one message is done; start the next connection. */
static void next_cycle(struct worker *w, struct bconn *c, uint64_t now)
{
	record(w, c->t_connect, now);
	close_conn(w, c);
	c->st = CS_IDLE;
	c->gen++;
	if (phase(w) != PHASE_STOP)
		start_connect(w, c);
}

static void after_echo(struct worker *w, struct bconn *c, uint64_t now)
{
	if (w->cfg->mode != MODE_CONNRATE) {
		tcp_send(w, c, now);
	} else if (c->done == 1 && w->cfg->once) {
		c->st = CS_DRAINING; /* the server closes first */
	} else if (c->done == 1) {
		next_cycle(w, c, now);
	}
}

/* Verifies n echoed bytes in w->buf; completes the messages they finish. */
static void consume(struct worker *w, struct bconn *c, size_t n, uint64_t now)
{
	uint64_t size = (uint64_t)w->cfg->size;
	size_t bad;

	if (c->rx_bytes + n > c->tx_bytes || c->st == CS_DRAINING) {
		count(&w->ct.mismatches, 1);
		report(&w->b->mismatch_lines, c, "the server sent %zu bytes more than it was sent",
		       n);
		fail_conn(w, c);
		return;
	}
	bad = bench_verify(w->buf, n, conn_key(c), c->rx_bytes, (size_t)size);
	if (bad < n) {
		mismatch(w, c, c->rx_bytes + bad, w->buf[bad]);
		fail_conn(w, c);
		return;
	}
	c->rx_bytes += n;
	c->last_ns = now;
	for (; c->done < c->rx_bytes / size; c->done++)
		if (w->cfg->mode != MODE_CONNRATE)
			record(w, c->stamp[c->done % (uint64_t)w->cfg->depth], now);
	after_echo(w, c, now);
}

static void tcp_eof(struct worker *w, struct bconn *c, uint64_t now)
{
	if (c->st == CS_DRAINING) {
		next_cycle(w, c, now);
		return;
	}
	count(&w->ct.errors, 1);
	report(&w->b->error_lines, c, "the server closed the connection after %llu messages",
	       (unsigned long long)c->done);
	fail_conn(w, c);
}

static void tcp_recv(struct worker *w, struct bconn *c)
{
	int fd = c->fd;
	ssize_t n;

	/* Bounded: a few reads, then let the other connections have a turn. */
	for (int i = 0; i < 4 && c->fd == fd; i++) {
		n = recv(fd, w->buf, BUF_BYTES, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (n < 0) {
			conn_error(w, c, "recv", errno);
			return;
		}
		if (n == 0) {
			tcp_eof(w, c, clock_now_ns());
			return;
		}
		consume(w, c, (size_t)n, clock_now_ns());
		if ((size_t)n < BUF_BYTES)
			return;
	}
}

/* ---------------------------------------------------------------- udp */

static void udp_build(struct worker *w, const struct bconn *c, uint64_t seq)
{
	uint32_t hdr[2] = {c->id, 0};
	uint64_t size = (uint64_t)w->cfg->size;

	memcpy(w->buf, hdr, sizeof(hdr));
	memcpy(w->buf + 8, &seq, sizeof(seq));
	bench_fill(w->buf + UDP_HEADER, (size_t)size - UDP_HEADER, conn_key(c),
		   seq * size + UDP_HEADER, (size_t)size);
}

/* Sends every datagram c may send now; a slot frees on an answer or a loss. */
static void udp_send(struct worker *w, struct bconn *c, uint64_t now)
{
	uint64_t depth = (uint64_t)w->cfg->depth, from;

	while (c->st == CS_RUNNING && c->udp_state[c->started % depth] != SLOT_PENDING &&
	       may_start(w, c, now, &from)) {
		uint64_t s = c->started % depth;

		udp_build(w, c, c->started);
		if (send(c->fd, w->buf, (size_t)w->cfg->size, 0) < 0) {
			/* ECONNREFUSED too: the probe found the server, so it refuses us. */
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				conn_error(w, c, "send", errno);
			break;
		}
		c->udp_seq[s] = c->started;
		c->udp_state[s] = SLOT_PENDING;
		c->udp_sent[s] = now;
		c->stamp[s] = from;
		c->started++;
		count(&w->ct.sent, 1);
	}
}

/* A late copy of the probe's echo: the server answered it twice (connection 0). */
static bool is_probe_echo(const uint8_t *buf, size_t n)
{
	uint32_t id;

	memcpy(&id, buf, sizeof(id));
	return n == UDP_HEADER && id == UDP_PROBE_ID;
}

/* Reports an echo of datagram seq whose length differs from what was sent. */
static void udp_wrong_length(struct worker *w, struct bconn *c, uint64_t seq, size_t n)
{
	count(&w->ct.mismatches, 1);
	if (n < (size_t)w->cfg->size)
		report(&w->b->mismatch_lines, c, "datagram %llu came back truncated: %zu of its %ld bytes",
		       (unsigned long long)seq, n, w->cfg->size);
	else
		report(&w->b->mismatch_lines, c, "datagram %llu came back %zu bytes long, not %ld",
		       (unsigned long long)seq, n, w->cfg->size);
}

/* Checks a datagram's length, header and payload; returns its sequence or -1. */
static int64_t udp_check(struct worker *w, struct bconn *c, size_t n)
{
	uint64_t size = (uint64_t)w->cfg->size, seq = 0;
	uint32_t id = 0;
	size_t bad;

	if (n >= UDP_HEADER) {
		memcpy(&id, w->buf, sizeof(id));
		memcpy(&seq, w->buf + 8, sizeof(seq));
	}
	if (is_probe_echo(w->buf, n)) {
		count(&w->ct.duplicates, 1);
		return -1;
	}
	if (n < UDP_HEADER || id != c->id || seq >= c->started) {
		count(&w->ct.mismatches, 1);
		report(&w->b->mismatch_lines, c, "a datagram of %zu bytes that was never sent", n);
		return -1;
	}
	if (n != size) {
		udp_wrong_length(w, c, seq, n);
		return -1;
	}
	bad = bench_verify(w->buf + UDP_HEADER, n - UDP_HEADER, conn_key(c),
			   seq * size + UDP_HEADER, (size_t)size);
	if (bad < n - UDP_HEADER) {
		mismatch(w, c, seq * size + UDP_HEADER + bad, w->buf[UDP_HEADER + bad]);
		return -1;
	}
	return (int64_t)seq;
}

static void udp_answer(struct worker *w, struct bconn *c, uint64_t seq, uint64_t now)
{
	uint64_t s = seq % (uint64_t)w->cfg->depth;

	if (c->udp_seq[s] != seq || c->udp_state[s] == SLOT_LOST) {
		count(&w->ct.late, 1); /* already given up on */
		return;
	}
	if (c->udp_state[s] == SLOT_ANSWERED) {
		count(&w->ct.duplicates, 1);
		return;
	}
	if (seq + 1 < c->udp_high)
		count(&w->ct.reordered, 1);
	else
		c->udp_high = seq + 1;
	c->udp_state[s] = SLOT_ANSWERED;
	c->done++;
	c->last_ns = now;
	record(w, c->stamp[s], now);
}

static void udp_recv(struct worker *w, struct bconn *c)
{
	uint64_t now = clock_now_ns();
	int64_t seq;
	ssize_t n;

	for (int i = 0; i < 64; i++) {
		n = recv(c->fd, w->buf, BUF_BYTES, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		if (n < 0) { /* an ICMP error, such as ECONNREFUSED */
			conn_error(w, c, "recv", errno);
			return;
		}
		seq = udp_check(w, c, (size_t)n);
		if (seq >= 0)
			udp_answer(w, c, (uint64_t)seq, now);
	}
	udp_send(w, c, now);
}

/* Declares lost the datagrams unanswered for --timeout, freeing their slots. */
static void udp_expire(struct worker *w, struct bconn *c, uint64_t now)
{
	uint64_t limit = (uint64_t)w->cfg->timeout_ms * 1000000u;

	for (long s = 0; s < w->cfg->depth; s++) {
		if (c->udp_state[s] == SLOT_PENDING && now - c->udp_sent[s] > limit) {
			c->udp_state[s] = SLOT_LOST;
			c->done++;
			count(&w->ct.lost, 1);
		}
	}
	udp_send(w, c, now);
}

/*
 * Connection 0 goes on with the socket the probe used: a server that locks
 * onto the first source port it hears from (socat UDP-LISTEN) keeps
 * answering it.  Only worker 0 holds connection 0, so nothing races here.
 */
static int take_probe(struct bench *b, const struct bconn *c)
{
	int fd = b->probe_fd;

	if (c->id != 0)
		return -1;
	b->probe_fd = -1;
	return fd;
}

/* A new connected UDP socket in c->fd; on failure c is failed and counted. */
static int udp_connect(struct worker *w, struct bconn *c)
{
	const struct bench_cfg *cfg = w->cfg;
	int fd = new_socket(cfg);

	if (fd < 0) {
		conn_error(w, c, "socket", -fd);
		return fd;
	}
	c->fd = fd;
	if (connect(fd, (struct sockaddr *)&cfg->addr, cfg->addrlen) < 0) {
		conn_error(w, c, "connect", errno);
		return -1;
	}
	return 0;
}

static void udp_open(struct worker *w, struct bconn *c)
{
	c->fd = take_probe(w->b, c);
	if (c->fd < 0 && udp_connect(w, c) < 0)
		return;
	set_events(w, c, EPOLLIN, EPOLL_CTL_ADD);
	c->st = CS_RUNNING;
	count(&w->ct.open, 1);
}

/* ---------------------------------------------------------------- the loop */

static void start_pacer(struct worker *w, uint64_t now)
{
	double rate = (double)w->cfg->rate * w->n / (double)w->cfg->conns;

	w->pace.on = w->cfg->rate > 0;
	w->pace.start_ns = now;
	w->pace.step_ns = rate > 0 ? 1e9 / rate : 0;
	w->pace.next = 0;
}

static void kick(struct worker *w, struct bconn *c, uint64_t now)
{
	if (c->st != CS_RUNNING)
		return;
	if (w->cfg->udp)
		udp_send(w, c, now);
	else
		tcp_send(w, c, now);
}

static void on_connected(struct worker *w, struct bconn *c)
{
	uint64_t now = clock_now_ns();

	w->connecting--;
	c->st = CS_RUNNING;
	c->started = c->done = c->tx_bytes = c->rx_bytes = 0;
	c->last_ns = now;
	count(&w->ct.open, 1);
	arm_out(w, c, false);
	/* With a schedule, the pacer sends, once every connection is up. */
	if (!w->cfg->rate)
		kick(w, c, now);
	connect_more(w);
}

static void finish_connect(struct worker *w, struct bconn *c)
{
	socklen_t len = sizeof(int);
	int e = 0;

	if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &e, &len) < 0)
		e = errno;
	if (e) {
		conn_error(w, c, "connect", e);
		connect_more(w);
		return;
	}
	on_connected(w, c);
}

static void handle_event(struct worker *w, struct bconn *c, uint32_t ev)
{
	int fd = c->fd;

	if (c->st == CS_CONNECTING) {
		finish_connect(w, c);
		return;
	}
	if (w->cfg->udp) {
		udp_recv(w, c);
		return;
	}
	if (ev & (EPOLLIN | EPOLLERR | EPOLLHUP))
		tcp_recv(w, c);
	if ((ev & EPOLLOUT) && c->fd == fd && c->st == CS_RUNNING)
		tcp_send(w, c, clock_now_ns());
}

/*
 * Hands out the sends the schedule made due.  A worker that fell behind by
 * more than a round skips ahead: one pass over every connection sends all
 * each one owes.
 */
static void pace_tick(struct worker *w, uint64_t now)
{
	uint64_t due;

	if (!w->pace.on || w->pace.step_ns <= 0 || now < w->pace.start_ns)
		return;
	due = (uint64_t)((double)(now - w->pace.start_ns) / w->pace.step_ns) + 1;
	if (due > w->pace.next + w->n)
		w->pace.next = due - w->n;
	for (; w->pace.next < due; w->pace.next++)
		kick(w, &w->conns[w->pace.next % w->n], now);
}

static bool stalled(const struct worker *w, const struct bconn *c, uint64_t now)
{
	uint64_t limit = (uint64_t)w->cfg->timeout_ms * 1000000u;

	if (c->st == CS_CONNECTING)
		return now - c->t_connect > limit;
	if (c->st == CS_DRAINING) /* --once: the echo came, the close does not */
		return now - c->last_ns > limit;
	return (c->st == CS_RUNNING || c->st == CS_DRAINING) && c->started > c->done &&
	       now - c->last_ns > limit;
}

/* A connection that made no progress for --timeout: an error, saying what it waited for. */
static void stall_error(struct worker *w, struct bconn *c)
{
	count(&w->ct.timeouts, 1);
	if (c->st != CS_DRAINING) {
		conn_error(w, c, c->st == CS_CONNECTING ? "connect" : "no echo", ETIMEDOUT);
		return;
	}
	count(&w->ct.errors, 1);
	report(&w->b->error_lines, c,
	       "the server did not close the connection within %g s of the echo (--once)",
	       (double)w->cfg->timeout_ms / 1000.0);
	fail_conn(w, c);
}

/* Timeouts, UDP losses and connrate retries, every SWEEP_NS. */
static void sweep(struct worker *w, uint64_t now)
{
	for (uint32_t i = 0; i < w->n; i++) {
		struct bconn *c = &w->conns[i];

		if (w->cfg->udp && c->st == CS_RUNNING) {
			udp_expire(w, c, now);
		} else if (stalled(w, c, now)) {
			stall_error(w, c);
		} else if (c->st == CS_BACKOFF && phase(w) != PHASE_STOP) {
			c->gen++;
			start_connect(w, c);
		}
	}
	connect_more(w);
	w->next_sweep = now + (w->cfg->udp ? UDP_SWEEP_NS : SWEEP_NS);
}

/*
 * How long epoll may sleep: until the next sweep or the next scheduled send.
 * Nanoseconds (epoll_pwait2), because a millisecond of oversleep would show
 * up in every latency counted from the schedule.
 */
static struct timespec wait_time(const struct worker *w, uint64_t now)
{
	struct timespec ts = {0, 0};
	uint64_t until = w->next_sweep;

	if (w->pace.on && w->pace.step_ns > 0) {
		uint64_t next =
			w->pace.start_ns + (uint64_t)((double)w->pace.next * w->pace.step_ns);

		if (next < until)
			until = next;
	}
	if (until > now) {
		ts.tv_sec = (time_t)((until - now) / 1000000000u);
		ts.tv_nsec = (long)((until - now) % 1000000000u);
	}
	return ts;
}

static void run_loop(struct worker *w)
{
	struct epoll_event ev[MAX_EVENTS];
	struct timespec ts;
	bool paced = false;
	uint64_t now;
	int n;

	while (phase(w) != PHASE_STOP && w->alive > 0) {
		ts = wait_time(w, clock_now_ns());
		n = epoll_pwait2(w->epfd, ev, MAX_EVENTS, &ts, NULL);
		for (int i = 0; i < n; i++)
			handle_event(w, ev[i].data.ptr, ev[i].events);
		now = clock_now_ns();
		/* The schedule starts once every connection is up, not before. */
		if (!paced && w->connecting == 0 && w->next_connect == w->n) {
			paced = true;
			start_pacer(w, now);
		}
		pace_tick(w, now);
		if (now >= w->next_sweep)
			sweep(w, now);
	}
}

static void start_conns(struct worker *w)
{
	w->alive = w->n;
	if (!w->cfg->udp) {
		connect_more(w);
		return;
	}
	for (uint32_t i = 0; i < w->n; i++)
		udp_open(w, &w->conns[i]);
	w->next_connect = w->n;
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;

	start_conns(w);
	w->next_sweep = clock_now_ns() + (w->cfg->udp ? UDP_SWEEP_NS : SWEEP_NS);
	run_loop(w);
	for (uint32_t i = 0; i < w->n; i++)
		close_conn(w, &w->conns[i]);
	atomic_fetch_sub(&w->b->live_workers, 1);
	return NULL;
}

/* ---------------------------------------------------------------- setup */

/* Gives the worker connections [first, first + n) and their buffers. */
static int worker_init(struct worker *w, struct bench *b, uint32_t first, uint32_t n)
{
	size_t depth = (size_t)b->cfg.depth;

	memset(w, 0, sizeof(*w));
	w->b = b;
	w->cfg = &b->cfg;
	w->n = n;
	w->epfd = epoll_create1(EPOLL_CLOEXEC);
	w->conns = calloc(n, sizeof(*w->conns));
	w->buf = malloc(BUF_BYTES);
	if (w->epfd < 0 || !w->conns || !w->buf || hist_init(&w->hist) < 0)
		return -ENOMEM;
	for (uint32_t i = 0; i < n; i++) {
		struct bconn *c = &w->conns[i];

		c->fd = -1;
		c->id = first + i;
		c->stamp = calloc(depth, sizeof(*c->stamp));
		c->udp_seq = b->cfg.udp ? calloc(depth, sizeof(*c->udp_seq)) : NULL;
		c->udp_sent = b->cfg.udp ? calloc(depth, sizeof(*c->udp_sent)) : NULL;
		c->udp_state = b->cfg.udp ? calloc(depth, 1) : NULL;
		if (!c->stamp || (b->cfg.udp && (!c->udp_seq || !c->udp_sent || !c->udp_state)))
			return -ENOMEM;
	}
	return 0;
}

static void worker_free(struct worker *w)
{
	for (uint32_t i = 0; w->conns && i < w->n; i++) {
		free(w->conns[i].stamp);
		free(w->conns[i].udp_seq);
		free(w->conns[i].udp_sent);
		free(w->conns[i].udp_state);
	}
	free(w->conns);
	free(w->buf);
	hist_free(&w->hist);
	if (w->epfd >= 0)
		close(w->epfd);
}

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

static int probe_tcp(int fd, const struct bench_cfg *c)
{
	socklen_t len = sizeof(int);
	int e = 0, rc;

	rc = net_wait(fd, POLLOUT, (int)c->timeout_ms);
	if (rc <= 0)
		return rc == 0 ? -ETIMEDOUT : rc;
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &len) < 0)
		return -errno;
	return -e;
}

static int probe_udp(int fd, const struct bench_cfg *c)
{
	uint8_t buf[UDP_HEADER] = {0};
	uint32_t id = UDP_PROBE_ID;
	ssize_t n;

	memcpy(buf, &id, sizeof(id));
	if (send(fd, buf, sizeof(buf), 0) < 0)
		return -errno;
	n = net_recv(fd, buf, sizeof(buf), (int)c->timeout_ms);
	return n < 0 ? (int)n : 0;
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
	int fd = new_socket(c), rc = 0;

	if (fd < 0) {
		snprintf(err, errlen, "socket: %s", explain(-fd));
		return fd;
	}
	if (connect(fd, (struct sockaddr *)&c->addr, c->addrlen) < 0 && errno != EINPROGRESS)
		rc = -errno;
	if (!rc)
		rc = c->udp ? probe_udp(fd, c) : probe_tcp(fd, c);
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

/* Counters summed over the workers at one instant. */
struct totals {
	uint64_t messages, bytes, errors, mismatches, timeouts;
	uint64_t sent, lost, duplicates, reordered, late, open;
};

static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
	(void)sig;
	interrupted = 1;
}

static void snapshot(struct worker *ws, long nw, struct totals *t)
{
	memset(t, 0, sizeof(*t));
	for (long i = 0; i < nw; i++) {
		struct counters *ct = &ws[i].ct;

		t->messages += load(&ct->messages);
		t->bytes += load(&ct->bytes);
		t->errors += load(&ct->errors);
		t->mismatches += load(&ct->mismatches);
		t->timeouts += load(&ct->timeouts);
		t->sent += load(&ct->sent);
		t->lost += load(&ct->lost);
		t->duplicates += load(&ct->duplicates);
		t->reordered += load(&ct->reordered);
		t->late += load(&ct->late);
		t->open += load(&ct->open);
	}
}

/* The figures that describe a window: end minus start; errors count the whole run. */
static void window(struct totals *end, const struct totals *start)
{
	end->messages -= start->messages;
	end->bytes -= start->bytes;
	end->sent -= start->sent;
}

static void progress(struct worker *ws, long nw, const struct bench_cfg *c, uint64_t elapsed_ns,
		     uint64_t *last_msgs, uint64_t *last_bytes)
{
	struct totals t;

	snapshot(ws, nw, &t);
	fprintf(stderr,
		"echoc: bench: %3llu s %s %10llu messages/s %9.2f MB/s  %llu/%ld open  %llu "
		"errors  %llu mismatches\n",
		(unsigned long long)(elapsed_ns / 1000000000u),
		elapsed_ns < (uint64_t)c->warmup_ms * 1000000u ? "warm-up" : "       ",
		(unsigned long long)(t.messages - *last_msgs),
		(double)(t.bytes - *last_bytes) / 1e6, (unsigned long long)t.open, c->conns,
		(unsigned long long)t.errors, (unsigned long long)t.mismatches);
	*last_msgs = t.messages;
	*last_bytes = t.bytes;
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
static double drive(struct bench *b, struct worker *ws, long nw, struct totals *t)
{
	const struct bench_cfg *c = &b->cfg;
	uint64_t t0 = clock_now_ns(), t_measure = t0 + (uint64_t)c->warmup_ms * 1000000u;
	uint64_t t_end = t_measure + (uint64_t)c->duration_ms * 1000000u, measure_ns = t0;
	uint64_t tick = t0 + 1000000000u, now, msgs = 0, bytes = 0, wake;
	bool tty = isatty(STDERR_FILENO);
	struct totals start = {0};

	while (!interrupted && atomic_load(&b->live_workers) > 0 &&
	       (now = clock_now_ns()) < t_end) {
		if (atomic_load(&b->phase) == PHASE_WARMUP && now >= t_measure) {
			snapshot(ws, nw, &start);
			measure_ns = now;
			atomic_store(&b->phase, PHASE_MEASURE);
		}
		if (now >= tick) {
			if (tty)
				progress(ws, nw, c, now - t0, &msgs, &bytes);
			tick += 1000000000u;
		}
		wake = tick < t_end ? tick : t_end;
		if (atomic_load(&b->phase) == PHASE_WARMUP && t_measure < wake)
			wake = t_measure;
		sleep_until(wake < now + 100000000u ? wake : now + 100000000u);
	}
	now = clock_now_ns();
	if (atomic_load(&b->phase) == PHASE_WARMUP) {
		snapshot(ws, nw, &start); /* stopped during the warm-up: nothing measured */
		measure_ns = now;
	}
	snapshot(ws, nw, t);
	atomic_store(&b->phase, PHASE_STOP);
	window(t, &start);
	return (double)(now - measure_ns) / 1e9;
}

/* ---------------------------------------------------------------- results */

static double per_s(uint64_t n, double secs)
{
	return secs > 0 ? (double)n / secs : 0.0;
}

static double pct_us(const struct hist *h, double p)
{
	return (double)hist_percentile(h, p) / 1000.0;
}

static void print_table(const struct bench_cfg *c, const struct totals *t, double secs,
			const struct hist *h)
{
	printf("echoc bench: %s%s to %s, %ld connections x %ld B, depth %ld, %ld threads\n",
	       c->udp ? "udp " : "", mode_names[c->mode], c->target, c->conns, c->size, c->depth,
	       c->threads);
	printf("  %-12s %14.2f s (warm-up of %.1f s excluded)\n", "measured", secs,
	       (double)c->warmup_ms / 1000.0);
	printf("  %-12s %14llu\n", "messages", (unsigned long long)t->messages);
	printf("  %-12s %14.1f\n", "messages/s", per_s(t->messages, secs));
	printf("  %-12s %14.3f (echoed payload)\n", "MB/s", per_s(t->bytes, secs) / 1e6);
	printf("  %-12s %10s %10s %10s %10s %10s\n", "latency us", "p50", "p90", "p99", "p99.9",
	       "max");
	printf("  %-12s %10.1f %10.1f %10.1f %10.1f %10.1f\n", "", pct_us(h, 50), pct_us(h, 90),
	       pct_us(h, 99), pct_us(h, 99.9), (double)h->max / 1000.0);
	printf("  %-12s %14llu (timeouts %llu)\n", "errors", (unsigned long long)t->errors,
	       (unsigned long long)t->timeouts);
	printf("  %-12s %14llu\n", "mismatches", (unsigned long long)t->mismatches);
	printf("  %-12s %14llu of %ld\n", "open at end", (unsigned long long)t->open, c->conns);
	if (c->udp)
		printf("  %-12s sent %llu, lost %llu, duplicates %llu, reordered %llu, late %llu\n",
		       "datagrams", (unsigned long long)t->sent, (unsigned long long)t->lost,
		       (unsigned long long)t->duplicates, (unsigned long long)t->reordered,
		       (unsigned long long)t->late);
}

static void print_json(const struct bench_cfg *c, const struct totals *t, double secs,
		       const struct hist *h)
{
	printf("{\"mode\": \"%s\", \"udp\": %s, \"target\": \"%s\", \"conns\": %ld, \"size\": %ld, "
	       "\"depth\": %ld, \"threads\": %ld, \"rate\": %ld, \"warmup_s\": %.3f, "
	       "\"duration_s\": %.3f, ",
	       mode_names[c->mode], c->udp ? "true" : "false", c->target, c->conns, c->size,
	       c->depth, c->threads, c->rate, (double)c->warmup_ms / 1000.0, secs);
	printf("\"messages\": %llu, \"messages_per_s\": %.1f, \"mbytes_per_s\": %.3f, ",
	       (unsigned long long)t->messages, per_s(t->messages, secs),
	       per_s(t->bytes, secs) / 1e6);
	printf("\"latency_us\": {\"p50\": %.3f, \"p90\": %.3f, \"p99\": %.3f, \"p999\": %.3f, "
	       "\"max\": %.3f, \"mean\": %.3f}, ",
	       pct_us(h, 50), pct_us(h, 90), pct_us(h, 99), pct_us(h, 99.9),
	       (double)h->max / 1000.0, hist_mean(h) / 1000.0);
	printf("\"errors\": %llu, \"mismatches\": %llu, \"timeouts\": %llu, \"conns_open\": %llu, ",
	       (unsigned long long)t->errors, (unsigned long long)t->mismatches,
	       (unsigned long long)t->timeouts, (unsigned long long)t->open);
	printf("\"datagrams\": {\"sent\": %llu, \"lost\": %llu, \"duplicates\": %llu, "
	       "\"reordered\": %llu, \"late\": %llu}}\n",
	       (unsigned long long)t->sent, (unsigned long long)t->lost,
	       (unsigned long long)t->duplicates, (unsigned long long)t->reordered,
	       (unsigned long long)t->late);
}

/* The exit status, with one line saying why when it is not 0. */
static int verdict(const struct totals *t)
{
	if (t->mismatches) {
		fprintf(stderr,
			"echoc: bench: %llu mismatches: the echo differed from what was sent\n",
			(unsigned long long)t->mismatches);
		return EXIT_FAIL;
	}
	if (t->errors) {
		fprintf(stderr, "echoc: bench: %llu errors\n", (unsigned long long)t->errors);
		return EXIT_FAIL;
	}
	if (!t->messages) {
		fprintf(stderr, "echoc: bench: no message was echoed in the measured window\n");
		return EXIT_FAIL;
	}
	return EXIT_OK;
}

static int report_results(const struct bench_cfg *c, struct worker *ws, long nw,
			  const struct totals *t, double secs, FILE *hist_out)
{
	for (long i = 1; i < nw; i++)
		hist_merge(&ws[0].hist, &ws[i].hist);
	if (c->json)
		print_json(c, t, secs, &ws[0].hist);
	else
		print_table(c, t, secs, &ws[0].hist);
	fflush(stdout);
	if (hist_out && (hist_write_percentiles(&ws[0].hist, hist_out, 1000.0) < 0 ||
			 fclose(hist_out) == EOF)) {
		fprintf(stderr, "echoc: bench: --hist %s: %s\n", c->hist_path, strerror(errno));
		return EXIT_FAIL;
	}
	return verdict(t);
}

/* ---------------------------------------------------------------- main */

/* Starts the workers with SIGINT and SIGTERM blocked, so only the main thread sees them. */
static int start_workers(struct bench *b, struct worker *ws, long nw)
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
		rc = -pthread_create(&ws[i].tid, NULL, worker_main, &ws[i]);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc) {
		atomic_store(&b->phase, PHASE_STOP);
		atomic_fetch_sub(&b->live_workers, (int)(nw - i + 1));
		for (long j = 0; j < i - 1; j++)
			pthread_join(ws[j].tid, NULL);
	}
	return rc;
}

static int run(struct bench *b, FILE *hist_out)
{
	const struct bench_cfg *c = &b->cfg;
	long nw = c->threads;
	struct worker *ws = calloc((size_t)nw, sizeof(*ws));
	struct sigaction sa = {.sa_handler = on_signal};
	struct totals t;
	double secs;
	int rc = -ENOMEM;

	for (long i = 0; ws && i < nw; i++)
		ws[i].epfd = -1;
	for (long i = 0; ws && i < nw; i++) {
		uint32_t first = (uint32_t)(c->conns * i / nw);

		rc = worker_init(&ws[i], b, first, (uint32_t)(c->conns * (i + 1) / nw) - first);
		if (rc < 0)
			break;
	}
	if (rc == 0) {
		sigaction(SIGINT, &sa, NULL);
		sigaction(SIGTERM, &sa, NULL);
		atomic_store(&b->phase, c->warmup_ms ? PHASE_WARMUP : PHASE_MEASURE);
		rc = start_workers(b, ws, nw);
	}
	if (rc < 0) {
		fprintf(stderr, "echoc: bench: cannot start: %s\n", strerror(-rc));
		rc = EXIT_FAIL;
		goto out_free;
	}
	secs = drive(b, ws, nw, &t);
	for (long i = 0; i < nw; i++)
		pthread_join(ws[i].tid, NULL);
	rc = report_results(c, ws, nw, &t, secs, hist_out);
	hist_out = NULL;
out_free:
	for (long i = 0; ws && i < nw; i++)
		worker_free(&ws[i]);
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
		return EXIT_FAIL;
	b->probe_fd = -1;
	switch (parse_args(&b->cfg, argc, argv, err, sizeof(err))) {
	case OPTS_HELP:
	case OPTS_VERSION:
		bench_usage(stdout);
		rc = EXIT_OK;
		break;
	case OPTS_ERROR:
		fprintf(stderr, "echoc: bench: %s\n", err);
		rc = EXIT_USAGE;
		break;
	default:
		if (preflight(b, &hist_out, err, sizeof(err)) < 0) {
			fprintf(stderr, "echoc: bench: %s\n", err);
			rc = EXIT_FAIL;
			break;
		}
		rc = run(b, hist_out);
	}
	if (b->probe_fd >= 0) /* the workers never started */
		close(b->probe_fd);
	free(b);
	return rc;
}
