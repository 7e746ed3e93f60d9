/*
 * engine.c - choosing an engine, and what the engines share.
 *
 * Shared here: the --max-conns slot count, and the two poll(2) loops of the
 * blocking models, one that accepts and one that serves a connection to its
 * end.  The iterative and threads models differ only in who calls the
 * second: the accepting thread itself, or a thread per connection.
 */
#include "engine.h"

#include "clock.h"
#include "conn.h"
#include "conn_end.h"
#include "log.h"
#include "proxy_stage.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Preferred first, like ae.c's "ordered by performances, descending". */
static const struct engine *const engines[] = {
	&engine_uring,
	&engine_epoll,
	&engine_threads,
	&engine_iterative,
};

/* How many of engines[] "auto" may choose from: the event-driven ones. */
enum { AUTO_CANDIDATES = 2 };

#define NENGINES (sizeof(engines) / sizeof(engines[0]))

static const struct engine *pick_auto(char *why, size_t whylen)
{
	char reason[ENGINE_WHYLEN];
	size_t len = 0;

	why[0] = '\0';
	for (size_t i = 0; i < AUTO_CANDIDATES; i++) {
		if (engines[i]->probe(reason, sizeof(reason)) == 0)
			return engines[i];
		len += (size_t)snprintf(why + len, len < whylen ? whylen - len : 0,
					"%s%s unavailable: %s", len ? "; " : "", engines[i]->name,
					reason);
	}
	return NULL;
}

const struct engine *engine_pick(const char *model, char *why, size_t whylen)
{
	if (!strcmp(model, "auto"))
		return pick_auto(why, whylen);
	for (size_t i = 0; i < NENGINES; i++) {
		if (strcmp(engines[i]->name, model))
			continue;
		if (engines[i]->probe(why, whylen) < 0)
			return NULL;
		why[0] = '\0';
		return engines[i];
	}
	snprintf(why, whylen, "model %s is not built in", model);
	return NULL;
}

bool server_take_slot(struct server *srv)
{
	long max = srv->cfg->max_conns;
	long n = atomic_load_explicit(&srv->nconns, memory_order_relaxed);

	do {
		if (max && n >= max)
			return false;
	} while (!atomic_compare_exchange_weak(&srv->nconns, &n, n + 1));
	return true;
}

bool server_release_slot(struct server *srv)
{
	long was = atomic_fetch_sub(&srv->nconns, 1);

	return srv->cfg->max_conns && was == srv->cfg->max_conns;
}

bool server_stop_requested(const struct server *srv)
{
	struct pollfd pfd = {.fd = srv->stop_fd, .events = POLLIN};

	return poll(&pfd, 1, 0) > 0;
}

unsigned server_conn_flags(const struct server *srv)
{
	return srv->cfg->once ? CONN_ONCE : 0;
}

/* What one connection served on its own thread needs to know about time. */
struct blocking_conn {
	struct server *srv;
	struct metrics_worker *m;
	int fd;
	struct conn c;
	struct conn_stats st;
	uint64_t idle_deadline;	 /* 0: none */
	uint64_t drain_deadline; /* 0: not draining */
	uint64_t grace_deadline; /* 0: no stop asked for yet */
	enum conn_end end;	 /* why serve_round() said to close */
	bool drained;		 /* the last read took less than it could: the socket is empty */
};

static uint64_t earliest(uint64_t a, uint64_t b)
{
	if (!a)
		return b;
	return !b || a < b ? a : b;
}

static uint64_t header_deadline(const struct blocking_conn *bc)
{
	return proxy_stage_pending(bc->st.proxy) ? bc->st.proxy->deadline : 0;
}

/* The poll(2) timeout until the nearest deadline; -1 for none. */
static int poll_timeout(const struct blocking_conn *bc)
{
	uint64_t d = earliest(earliest(bc->idle_deadline, bc->drain_deadline), bc->grace_deadline);
	uint64_t now = clock_now_ms();

	d = earliest(d, header_deadline(bc));
	if (!d)
		return -1;
	return d <= now ? 0 : (int)(d - now > 60000 ? 60000 : d - now);
}

/* True when a deadline passed; bc->end then says which. */
static bool past_deadline(struct blocking_conn *bc)
{
	uint64_t now = clock_now_ms(), header = header_deadline(bc);

	if (header && now >= header) {
		conn_stats_refused(&bc->st, PROXY_ERR_TIMEOUT);
		bc->end = CONN_END_PROXY_TIMEOUT;
	} else if (!header && bc->idle_deadline && now >= bc->idle_deadline) {
		bc->end = CONN_END_IDLE;
	} else if (bc->drain_deadline && now >= bc->drain_deadline) {
		bc->end = conn_end_done(&bc->c); /* the echo was delivered */
	} else if (bc->grace_deadline && now >= bc->grace_deadline) {
		bc->end = CONN_END_GRACE;
	} else {
		return false;
	}
	return true;
}

static void note_activity(struct blocking_conn *bc)
{
	long idle_ms = bc->srv->cfg->idle_timeout_ms;

	if (idle_ms && !bc->drain_deadline)
		bc->idle_deadline = clock_now_ms() + (uint64_t)idle_ms;
}

/*
 * Lends the connection its buffer before a read: a connection holds one only
 * while bytes are in flight (conn.h's lent mode), so an idle thread costs
 * its stack and no buffer.  False when out of memory (close, as a reset).
 */
static bool lend(struct blocking_conn *bc)
{
	unsigned char *buf;

	if (bc->c.buf)
		return true;
	buf = malloc(bc->c.cap);
	if (!buf) {
		bc->end = CONN_END_RESET;
		return false;
	}
	conn_lend(&bc->c, buf);
	return true;
}

/* A receive failed: false (close, as a reset) unless it is worth another try. */
static bool recv_failed(struct blocking_conn *bc)
{
	bc->end = CONN_END_RESET;
	return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
}

/*
 * Reads once into the PROXY header buffer.  On PROXY_OK the bytes after the
 * header go to conn as if just read.  Returns false when the connection
 * should close (bc->end says why).
 */
static bool read_header(struct blocking_conn *bc)
{
	struct proxy_stage *ps = bc->st.proxy;
	const uint8_t *data;
	unsigned char *p;
	size_t room, n;
	ssize_t got;
	enum proxy_result r;

	p = proxy_stage_room(ps, &room);
	got = recv(bc->fd, p, room, 0);
	if (got < 0)
		return recv_failed(bc);
	if (got > 0)
		conn_stats_in(&bc->st, bc->m, (size_t)got);
	r = proxy_stage_arrived(ps, (size_t)got);
	if (r == PROXY_NEED_MORE)
		return true;
	if (r != PROXY_OK) {
		conn_stats_refused(&bc->st, r);
		bc->end = conn_end_proxy(r);
		return false;
	}
	n = proxy_stage_data(ps, &data);
	if (n && !lend(bc))
		return false;
	if (n && conn_read_buf(&bc->c, &p) >= n) { /* --buffer >= PROXY_HEADER_MAX */
		memcpy(p, data, n);
		conn_read_done(&bc->c, n);
	}
	proxy_stage_done(ps);
	note_activity(bc);
	return true;
}

/* Reads once into the connection.  Returns false when the connection broke. */
static bool read_some(struct blocking_conn *bc)
{
	unsigned char *p;
	size_t space;
	ssize_t n;

	if (proxy_stage_pending(bc->st.proxy))
		return read_header(bc);
	if (conn_wants_read(&bc->c) && !lend(bc))
		return false;
	space = conn_read_buf(&bc->c, &p);
	if (space == 0)
		return true;
	n = recv(bc->fd, p, space, 0);
	if (n < 0)
		return recv_failed(bc);
	bc->drained = (size_t)n < space;
	conn_read_done(&bc->c, (size_t)n);
	if (n > 0)
		conn_stats_in(&bc->st, bc->m, (size_t)n);
	note_activity(bc);
	return true;
}

/* Sends what is pending.  Returns false when the connection broke. */
static bool write_some(struct blocking_conn *bc)
{
	const unsigned char *p;
	size_t len = conn_send_buf(&bc->c, &p);
	ssize_t n;

	if (len == 0)
		return true;
	n = send(bc->fd, p, len, MSG_NOSIGNAL);
	if (n < 0) {
		bc->end = CONN_END_RESET;
		return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
	}
	conn_sent(&bc->c, (size_t)n);
	conn_stats_out(&bc->st, bc->m, (size_t)n);
	note_activity(bc);
	return true;
}

/* Shuts the write side when the echo is complete; true when done. */
static bool advance(struct blocking_conn *bc)
{
	if (conn_wants_shutdown(&bc->c)) {
		shutdown(bc->fd, SHUT_WR);
		conn_shutdown(&bc->c);
		bc->idle_deadline = 0;
		bc->drain_deadline = clock_now_ms() + CONN_DRAIN_MS;
	}
	bc->end = conn_end_done(&bc->c);
	return conn_done(&bc->c);
}

/* One poll(2) round.  Returns false when the connection should close. */
static bool serve_round(struct blocking_conn *bc)
{
	enum { POLL_CONN, POLL_STOP };
	struct pollfd pfd[2] = {
		[POLL_CONN] = {.fd = bc->fd},
		[POLL_STOP] = {.fd = bc->grace_deadline ? -1 : bc->srv->stop_fd, .events = POLLIN},
	};
	const unsigned char *p;
	int rc;

	pfd[POLL_CONN].events = (short)((conn_wants_read(&bc->c) ? POLLIN : 0) |
					(conn_send_buf(&bc->c, &p) ? POLLOUT : 0));
	rc = poll(pfd, 2, poll_timeout(bc));
	if (rc < 0) {
		bc->end = CONN_END_RESET;
		return errno == EINTR && !past_deadline(bc);
	}
	if (pfd[POLL_STOP].revents)
		bc->grace_deadline = clock_now_ms() + (uint64_t)bc->srv->cfg->grace_ms;
	/*
	 * Every round, not only the quiet ones: a client that keeps the socket
	 * readable (a flood while draining, say) would otherwise never meet its
	 * deadline, and would keep a stopping server running.
	 */
	if (past_deadline(bc))
		return false;
	if (rc == 0 || pfd[POLL_CONN].revents == 0)
		return true;
	bc->end = CONN_END_RESET;
	if (pfd[POLL_CONN].revents & POLLERR)
		return false;
	if (!read_some(bc) || !write_some(bc))
		return false;
	/*
	 * Everything echoed and nothing more to read: the buffer goes.  A
	 * sender that fills every read keeps it, so a stream costs one
	 * allocation, not one per buffer.
	 */
	if (bc->drained)
		free(conn_reclaim(&bc->c));
	return !advance(bc);
}

void engine_serve_blocking(struct server *srv, int fd, struct metrics_worker *m)
{
	struct blocking_conn bc = {.srv = srv, .m = m, .fd = fd, .end = CONN_END_RESET};
	uint64_t now = clock_now_ms();

	conn_stats_start(&bc.st, fd, now);
	if (srv->cfg->proxy_protocol)
		bc.st.proxy = proxy_stage_new(now, (uint64_t)srv->cfg->proxy_timeout_ms);
	if (bc.st.proxy || !srv->cfg->proxy_protocol) {
		conn_init(&bc.c, NULL, (size_t)srv->cfg->buffer_bytes, server_conn_flags(srv));
		note_activity(&bc);
		while (serve_round(&bc))
			;
	}
	free(bc.c.buf); /* still lent if the connection ended with bytes unsent */
	conn_ended(m, fd, &bc.st, bc.end);
	close(fd);
}

void engine_log_accept_error(int err)
{
	static _Atomic uint64_t last_ms;
	uint64_t now = clock_now_ms(), was = atomic_load(&last_ms);

	/* Shed load quietly: one line a minute is enough to tell the operator. */
	if (was && now - was < 60000)
		return;
	if (!atomic_compare_exchange_strong(&last_ms, &was, now))
		return;
	log_warn("accept: %s; new connections wait in the backlog", strerror(-err));
}

/* Accepts one connection from lfd if a slot is free.  Returns -errno or 0. */
static int accept_one(struct accept_loop *al, int lfd)
{
	int fd;

	if (!server_take_slot(al->srv))
		return -EBUSY;
	fd = net_accept(lfd);
	if (fd < 0) {
		server_release_slot(al->srv);
		return fd;
	}
	metrics_add(al->m, METRICS_ACCEPTED, 1);
	al->serve(al, fd);
	return 0;
}

/* Drains a wake-up pipe so that it only fires again for a new event. */
static void drain_wake(int fd)
{
	char buf[64];

	while (read(fd, buf, sizeof(buf)) > 0)
		;
}

/* Accepts from every readable listener; returns how long to pause (-1: not). */
static int accept_ready(struct accept_loop *al, struct pollfd *lpfd, int n)
{
	for (int i = 0; i < n; i++) {
		int rc;

		if (!(lpfd[i].revents & POLLIN))
			continue;
		rc = accept_one(al, lpfd[i].fd);
		if (rc == -EBUSY) { /* full: until a slot frees */
			metrics_add(al->m, METRICS_MAXCONNS_PAUSES, 1);
			return al->wake_fd >= 0 ? 60000 : ENGINE_ACCEPT_PAUSE_MS;
		}
		if (rc < 0 && net_accept_error_next(rc) == NET_ACCEPT_PAUSE) {
			metrics_add(al->m, METRICS_ACCEPT_PAUSES, 1);
			engine_log_accept_error(rc);
			return ENGINE_ACCEPT_PAUSE_MS;
		}
	}
	return -1;
}

int engine_accept_loop(struct accept_loop *al)
{
	enum { POLL_STOP, POLL_WAKE, POLL_LISTENERS };
	struct server *srv = al->srv;
	int n = srv->nlisteners, pause_ms = -1, rc = 0;
	struct pollfd *pfd = calloc((size_t)n + POLL_LISTENERS, sizeof(*pfd));

	if (!pfd)
		return -ENOMEM;
	pfd[POLL_STOP] = (struct pollfd){.fd = srv->stop_fd, .events = POLLIN};
	pfd[POLL_WAKE] = (struct pollfd){.fd = al->wake_fd, .events = POLLIN};
	for (int i = 0; i < n; i++)
		pfd[POLL_LISTENERS + i] =
			(struct pollfd){.fd = srv->listeners[i].fd, .events = POLLIN};
	for (;;) {
		bool paused = pause_ms >= 0;

		/* While paused, leave the listeners out: their backlog waits. */
		if (poll(pfd, paused ? POLL_LISTENERS : (nfds_t)(n + POLL_LISTENERS),
			 paused ? pause_ms : -1) < 0) {
			if (errno == EINTR)
				continue;
			rc = -errno;
			break;
		}
		if (pfd[POLL_STOP].revents)
			break;
		if (pfd[POLL_WAKE].revents)
			drain_wake(al->wake_fd);
		pause_ms = paused ? -1 : accept_ready(al, pfd + POLL_LISTENERS, n);
	}
	free(pfd);
	return rc;
}
