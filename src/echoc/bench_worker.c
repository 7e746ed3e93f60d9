/*
 * bench_worker.c - one worker thread of "echoc bench": its connections'
 * common life (events, failure, latency) and its epoll(2) loop.
 *
 * Level-triggered; EPOLLOUT is armed only while a send is short.  With
 * --rate, sends follow a fixed schedule and latency counts from the
 * scheduled time, not from the moment the send happened: a server that
 * stalls cannot hide the wait of the messages queued behind the stall
 * (coordinated omission).
 */
#include "bench_worker.h"

#include "bench_pattern.h"
#include "clock.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#define SWEEP_NS     (100 * 1000000ull)
#define UDP_SWEEP_NS (10 * 1000000ull)
#define MAX_EVENTS   256

/* ---------------------------------------------------------------- connections */

uint64_t bench_conn_key(const struct bconn *c)
{
	return (uint64_t)c->id << 32 | c->gen;
}

void bench_set_events(struct bench_worker *w, struct bconn *c, uint32_t ev, int op)
{
	struct epoll_event e = {.events = ev, .data.ptr = c};

	epoll_ctl(w->epfd, op, c->fd, &e);
}

void bench_arm_out(struct bench_worker *w, struct bconn *c, bool on)
{
	if (c->out_armed == on)
		return;
	c->out_armed = on;
	bench_set_events(w, c, EPOLLIN | (on ? EPOLLOUT : 0), EPOLL_CTL_MOD);
}

void bench_close_conn(struct bench_worker *w, struct bconn *c)
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

/*
 * Ends a connection after a failure.  connrate slots retry at the next
 * sweep; other modes lose the connection for the rest of the run.
 */
void bench_fail_conn(struct bench_worker *w, struct bconn *c)
{
	bench_close_conn(w, c);
	if (w->cfg->mode == MODE_CONNRATE) {
		c->st = CS_BACKOFF;
		return;
	}
	c->st = CS_DEAD;
	w->alive--;
}

void bench_conn_error(struct bench_worker *w, struct bconn *c, const char *what, int e)
{
	bench_count(&w->ct.errors, 1);
	bench_report(&w->b->error_lines, c, "%s: %s", what, bench_explain(e));
	bench_fail_conn(w, c);
}

int bench_socket(const struct bench_cfg *cfg)
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

int bench_bind_source(const struct bench_cfg *cfg, int fd, uint32_t id)
{
	struct sockaddr_storage src = cfg->source;
	struct sockaddr_in *sin = (struct sockaddr_in *)&src;
	int one = 1;

	if (!cfg->nsources)
		return 0;
	if (src.ss_family == AF_INET)
		sin->sin_addr.s_addr = htonl(ntohl(sin->sin_addr.s_addr) + id % cfg->nsources);
#ifdef IP_BIND_ADDRESS_NO_PORT
	/* The port is chosen at connect(2), per 4-tuple: each source address
	 * gets the whole ephemeral range towards each server port. */
	setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
#else
	(void)one;
#endif
	if (bind(fd, (const struct sockaddr *)&src,
		 src.ss_family == AF_INET6 ? sizeof(struct sockaddr_in6)
					   : sizeof(struct sockaddr_in)) < 0)
		return -errno;
	return 0;
}

/* The time the k-th message of c is due on the fixed-rate schedule. */
static uint64_t due_time(const struct bench_worker *w, const struct bconn *c, uint64_t k)
{
	uint64_t j = k * w->n + (uint64_t)(c - w->conns);

	return w->pace.start_ns + (uint64_t)((double)j * w->pace.step_ns);
}

/*
 * Whether c may begin another message now.  On success *from is the time
 * its latency counts from: the schedule's, with --rate.
 */
bool bench_may_start(const struct bench_worker *w, const struct bconn *c, uint64_t now,
		     uint64_t *from)
{
	const struct bench_cfg *cfg = w->cfg;

	if (bench_phase(w) == PHASE_STOP || c->started - c->done >= (uint64_t)cfg->depth)
		return false;
	if (cfg->pings && c->started >= (uint64_t)cfg->pings)
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

static bool measuring(const struct bench_worker *w)
{
	return bench_phase(w) == PHASE_MEASURE;
}

/* Counts one echoed message; its latency only while measuring. */
void bench_record(struct bench_worker *w, uint64_t from, uint64_t now)
{
	if (measuring(w))
		hist_record(&w->hist, now > from ? now - from : 0);
	bench_count(&w->ct.messages, 1);
	bench_count(&w->ct.bytes, (uint64_t)w->cfg->size);
}

void bench_mismatch(struct bench_worker *w, struct bconn *c, uint64_t off, uint8_t got)
{
	uint8_t want;
	uint64_t size = (uint64_t)w->cfg->size;

	bench_fill(&want, 1, bench_conn_key(c), off, (size_t)size);
	bench_count(&w->ct.mismatches, 1);
	bench_report(&w->b->mismatch_lines, c,
		     "mismatch in message %llu at byte %llu: expected 0x%02x, got 0x%02x",
		     (unsigned long long)(off / size), (unsigned long long)(off % size), want, got);
}

/* ---------------------------------------------------------------- the loop */

static void start_pacer(struct bench_worker *w, uint64_t now)
{
	double rate = (double)w->cfg->rate * w->n / (double)w->cfg->conns;

	w->pace.on = w->cfg->rate > 0;
	w->pace.start_ns = now;
	w->pace.step_ns = rate > 0 ? 1e9 / rate : 0;
	w->pace.next = 0;
}

static void kick(struct bench_worker *w, struct bconn *c, uint64_t now)
{
	if (c->st != CS_RUNNING)
		return;
	if (w->cfg->udp)
		bench_udp_send(w, c, now);
	else
		bench_tcp_send(w, c, now);
}

static void handle_event(struct bench_worker *w, struct bconn *c, uint32_t ev)
{
	int fd = c->fd;

	if (c->st == CS_CONNECTING) {
		bench_tcp_connected(w, c);
		return;
	}
	if (w->cfg->udp) {
		bench_udp_recv(w, c);
		return;
	}
	if (ev & (EPOLLIN | EPOLLERR | EPOLLHUP))
		bench_tcp_recv(w, c);
	if ((ev & EPOLLOUT) && c->fd == fd && c->st == CS_RUNNING)
		bench_tcp_send(w, c, clock_now_ns());
}

/*
 * Hands out the sends the schedule made due.  A worker that fell behind by
 * more than a round skips ahead: one pass over every connection sends all
 * each one owes.
 */
static void pace_tick(struct bench_worker *w, uint64_t now)
{
	uint64_t due;

	if (!w->pace.on || w->pace.step_ns <= 0 || now < w->pace.start_ns)
		return;
	due = (uint64_t)((double)(now - w->pace.start_ns) / w->pace.step_ns) + 1;
	if (due > w->pace.next + w->n)
		w->pace.next = due - w->n;
	for (; w->pace.next < due; w->pace.next++)
		kick(w, &w->conns[w->pace.next % w->n], now);
	/* --pings: every connection has had its turns; the schedule is over. */
	if (w->cfg->pings && w->pace.next >= (uint64_t)w->cfg->pings * w->n)
		w->pace.on = false;
}

static bool stalled(const struct bench_worker *w, const struct bconn *c, uint64_t now)
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
static void stall_error(struct bench_worker *w, struct bconn *c)
{
	bench_count(&w->ct.timeouts, 1);
	if (c->st != CS_DRAINING) {
		bench_conn_error(w, c, c->st == CS_CONNECTING ? "connect" : "no echo", ETIMEDOUT);
		return;
	}
	bench_count(&w->ct.errors, 1);
	bench_report(&w->b->error_lines, c,
		     "the server did not close the connection within %g s of the echo (--once)",
		     (double)w->cfg->timeout_ms / 1000.0);
	bench_fail_conn(w, c);
}

/* Timeouts, UDP losses and connrate retries, every SWEEP_NS. */
static void sweep(struct bench_worker *w, uint64_t now)
{
	for (uint32_t i = 0; i < w->n; i++) {
		struct bconn *c = &w->conns[i];

		if (w->cfg->udp && c->st == CS_RUNNING) {
			bench_udp_expire(w, c, now);
		} else if (stalled(w, c, now)) {
			stall_error(w, c);
		} else if (c->st == CS_BACKOFF && bench_phase(w) != PHASE_STOP) {
			c->gen++;
			bench_tcp_connect(w, c);
		}
	}
	bench_tcp_connect_more(w);
	w->next_sweep = now + (w->cfg->udp ? UDP_SWEEP_NS : SWEEP_NS);
}

/*
 * How long epoll may sleep: until the next sweep or the next scheduled send.
 * Nanoseconds (epoll_pwait2), because a millisecond of oversleep would show
 * up in every latency counted from the schedule.
 */
static struct timespec wait_time(const struct bench_worker *w, uint64_t now)
{
	struct timespec ts = {0, 0};
	uint64_t until = w->next_sweep;

	if (w->cfg->busy_poll)
		return ts; /* --busy-poll: look and come back at once, never sleep */

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

/* --ping-on-usr1 holds the schedule until the signal; otherwise it starts at once. */
static bool may_ping(const struct bench_worker *w)
{
	return !w->cfg->ping_on_usr1 || atomic_load(&w->b->ping_go);
}

/*
 * --busy-poll with a thread's only connection running and nothing queued to
 * send: reads it directly, the way a spinning recv(2) does, instead of asking
 * epoll first.  One system call per turn instead of two on the echo's path,
 * so the figure measures the server, not the client's readiness call.
 */
static bool spin_on_socket(struct bench_worker *w)
{
	struct bconn *c = &w->conns[0];

	if (!w->cfg->busy_poll || w->cfg->udp || w->n != 1 || c->st != CS_RUNNING || c->out_armed)
		return false;
	bench_tcp_recv(w, c);
	return true;
}

static void run_loop(struct bench_worker *w)
{
	struct epoll_event ev[MAX_EVENTS];
	struct timespec ts;
	bool paced = false;
	uint64_t now;
	int n;

	while (bench_phase(w) != PHASE_STOP && w->alive > 0) {
		if (spin_on_socket(w)) {
			n = 0;
		} else {
			ts = wait_time(w, clock_now_ns());
			n = epoll_pwait2(w->epfd, ev, MAX_EVENTS, &ts, NULL);
		}
		for (int i = 0; i < n; i++)
			handle_event(w, ev[i].data.ptr, ev[i].events);
		now = clock_now_ns();
		/* The schedule starts once every connection is up, not before. */
		if (!atomic_load(&w->up_ns) && w->connecting == 0 && w->next_connect == w->n)
			atomic_store(&w->up_ns, now);
		if (!paced && atomic_load(&w->up_ns) && may_ping(w)) {
			paced = true;
			start_pacer(w, now);
		}
		pace_tick(w, now);
		if (now >= w->next_sweep)
			sweep(w, now);
	}
}

static void start_conns(struct bench_worker *w)
{
	w->alive = w->n;
	if (!w->cfg->udp) {
		bench_tcp_connect_more(w);
		return;
	}
	for (uint32_t i = 0; i < w->n; i++)
		bench_udp_open(w, &w->conns[i]);
	w->next_connect = w->n;
}

void *bench_worker_main(void *arg)
{
	struct bench_worker *w = arg;

	start_conns(w);
	w->next_sweep = clock_now_ns() + (w->cfg->udp ? UDP_SWEEP_NS : SWEEP_NS);
	run_loop(w);
	for (uint32_t i = 0; i < w->n; i++)
		bench_close_conn(w, &w->conns[i]);
	atomic_fetch_sub(&w->b->live_workers, 1);
	return NULL;
}

/* ---------------------------------------------------------------- setup */

/* Gives the worker connections [first, first + n) and their buffers. */
int bench_worker_init(struct bench_worker *w, struct bench *b, uint32_t first, uint32_t n)
{
	size_t depth = (size_t)b->cfg.depth;

	memset(w, 0, sizeof(*w));
	w->b = b;
	w->cfg = &b->cfg;
	w->n = n;
	w->epfd = epoll_create1(EPOLL_CLOEXEC);
	w->conns = calloc(n, sizeof(*w->conns));
	w->buf = malloc(BENCH_BUF_BYTES);
	if (w->epfd < 0 || !w->conns || !w->buf || hist_init(&w->hist) < 0 ||
	    hist_init(&w->first) < 0)
		return -ENOMEM;
	for (uint32_t i = 0; i < n; i++) {
		struct bconn *c = &w->conns[i];

		c->fd = -1;
		c->id = first + i;
		c->stamp = calloc(depth, sizeof(*c->stamp));
		c->udp_seq = b->cfg.udp ? calloc(depth, sizeof(*c->udp_seq)) : NULL;
		c->udp_sent = b->cfg.udp ? calloc(depth, sizeof(*c->udp_sent)) : NULL;
		c->udp_state = b->cfg.udp ? calloc(depth, 1) : NULL;
		c->udp_prev = b->cfg.udp ? calloc(depth, 1) : NULL;
		if (!c->stamp ||
		    (b->cfg.udp && (!c->udp_seq || !c->udp_sent || !c->udp_state || !c->udp_prev)))
			return -ENOMEM;
	}
	return 0;
}

void bench_worker_free(struct bench_worker *w)
{
	for (uint32_t i = 0; w->conns && i < w->n; i++) {
		free(w->conns[i].stamp);
		free(w->conns[i].udp_seq);
		free(w->conns[i].udp_sent);
		free(w->conns[i].udp_state);
		free(w->conns[i].udp_prev);
	}
	free(w->conns);
	free(w->buf);
	hist_free(&w->hist);
	hist_free(&w->first);
	if (w->epfd >= 0)
		close(w->epfd);
}
