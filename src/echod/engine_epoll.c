/*
 * engine_epoll.c - non-blocking sockets, one epoll(7) event loop per worker.
 *
 * Technique: every worker thread owns an epoll instance and registers every
 * listener in it with EPOLLEXCLUSIVE (Linux 4.5), so a new connection wakes
 * one worker, which accepts it and serves it for its whole life.  Sockets
 * are level-triggered: a readable connection gets one recv(2) of up to the
 * buffer size per wake-up and its echo is sent at once, so a busy client
 * cannot starve the others on its worker.  EPOLLOUT is asked for only while
 * an echo is stuck, and EPOLLIN dropped only while the buffer is full
 * (backpressure), so steady ping-pong costs no epoll_ctl(2) calls.
 *
 * Memory: a connection holds a buffer only while bytes are in flight;
 * buffers come from a small per-worker pool, so idle connections cost a
 * hundred bytes here (struct econn, 88) plus the kernel's socket buffers.
 *
 * Timers: every connection sits on one of three lists kept in deadline
 * order because each list's timeout is constant: "header" (--proxy-protocol:
 * --proxy-timeout from the accept for the header), "active" (idle timeout;
 * a connection moves to the tail when bytes move) and "drain" (the
 * lingering close after --once).  epoll_wait(2) sleeps until the nearest
 * deadline.
 *
 * --proxy-protocol: until its header is complete a connection reads into
 * its header buffer (proxy_stage.h), not into a lent one; the bytes after
 * the header are copied into a lent buffer as if just read.
 *
 * --busy-poll: epoll_wait(2) gets a timeout of 0 and the loop goes round
 * again at once, so a worker never sleeps and no message waits for a
 * wake-up; the deadlines are checked every turn as always, and the stop
 * is an event like any other, seen on the next turn.  A turn that found
 * nothing reads the connection that last brought bytes directly, up to
 * HOT_TRIES times (poll_hot), so at one busy connection a message costs a
 * recv(2) to find, not an epoll_wait(2) and then a recv(2); after a streak
 * of such messages the connection leaves the epoll set while it stays hot
 * (detach_hot()), so its peer's sends stop touching this worker's epoll
 * instance.  The epoll instance also gets the kernel's busy-poll
 * parameters (busy_poll.h).
 *
 * Trade-off: Linux only.  Needs Linux 4.5 for EPOLLEXCLUSIVE.
 */
#include "engine.h"

#include "busy_poll.h"
#include "clock.h"
#include "conn.h"
#include "conn_end.h"
#include "log.h"
#include "proxy_stage.h"
#include "workers.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

enum {
	EVENTS_MAX = 256,  /* epoll_wait(2) batch */
	ACCEPT_BATCH = 64, /* accepts per listener wake-up, so reads are not starved */
	POOL_MAX = 64,	   /* free buffers a worker keeps for reuse */
	HOT_TRIES = 4,	   /* --busy-poll: direct reads of the hot connection per idle turn */
};

/* --busy-poll: a connection silent this long is no longer read directly. */
#define HOT_IDLE_NS (200 * 1000ull)
/* --busy-poll: found by this many direct reads in a row, it leaves the epoll set (detach_hot()). */
#define HOT_DETACH_STREAK 16

/* What an epoll_event's data.ptr points at; each starts with its kind. */
enum source_kind {
	SRC_LISTENER,
	SRC_STOP,
	SRC_WAKE,
	SRC_CONN,
};

struct source {
	enum source_kind kind;
	int fd;
};

struct econn;

struct conn_list {
	struct econn *head, *tail;
};

struct econn {
	struct source src; /* first: data.ptr points here */
	uint32_t events;   /* as registered with epoll */
	uint64_t deadline; /* of the list it is on; 0 = none */
	struct econn *prev, *next;
	struct conn_list *list;
	struct conn c;
	struct conn_stats st;
};

struct buf_pool {
	unsigned char *free[POOL_MAX];
	int n;
	size_t size;
};

struct epoll_engine;

struct worker {
	struct epoll_engine *eng;
	struct server *srv;
	struct metrics_worker *m;
	int epfd;
	struct source stop, wake;
	struct source *lsrc; /* one per listener it accepts from (listener_serves) */
	int nlsrc;
	bool listening;	    /* listeners are in epfd */
	bool full;	    /* not listening: every --max-conns slot is taken */
	uint64_t resume_ms; /* not listening: out of descriptors until then */
	bool stopping;
	uint64_t grace_deadline;
	long nconns;
	struct conn_list header; /* --proxy-protocol: oldest accept first */
	struct conn_list active; /* oldest activity first */
	struct conn_list drain;	 /* earliest drain deadline first */
	struct buf_pool pool;
	struct econn *hot;    /* --busy-poll: the connection that last brought bytes */
	uint64_t hot_last_ns; /* when it did */
	int hot_streak;	      /* its messages found by direct reads in a row */
	bool hot_detached;    /* it is out of the epoll set: read every turn */
};

struct epoll_engine {
	struct server *srv;
	struct worker *w;
	int n;
};

static void list_remove(struct econn *ec)
{
	struct conn_list *l = ec->list;

	if (!l)
		return;
	if (ec->prev)
		ec->prev->next = ec->next;
	else
		l->head = ec->next;
	if (ec->next)
		ec->next->prev = ec->prev;
	else
		l->tail = ec->prev;
	ec->prev = ec->next = NULL;
	ec->list = NULL;
}

/* Appends ec to l with a deadline; lists stay sorted since each timeout is fixed. */
static void list_push(struct conn_list *l, struct econn *ec, uint64_t deadline)
{
	list_remove(ec);
	ec->deadline = deadline;
	ec->list = l;
	ec->prev = l->tail;
	if (l->tail)
		l->tail->next = ec;
	else
		l->head = ec;
	l->tail = ec;
}

static unsigned char *pool_get(struct buf_pool *p)
{
	return p->n ? p->free[--p->n] : malloc(p->size);
}

static void pool_put(struct buf_pool *p, unsigned char *buf)
{
	if (!buf)
		return;
	if (p->n < POOL_MAX)
		p->free[p->n++] = buf;
	else
		free(buf);
}

static void pool_drain(struct buf_pool *p)
{
	while (p->n)
		free(p->free[--p->n]);
}

static uint64_t active_deadline(const struct worker *w, uint64_t now)
{
	long idle_ms = w->srv->cfg->idle_timeout_ms;

	return idle_ms ? now + (uint64_t)idle_ms : 0;
}

/*
 * Adds every listener to the worker's epoll set, or removes them all.  All
 * or nothing: when an add fails (out of memory, or of epoll watches) the
 * ones added are removed again.  Returns 0 or -errno.
 */
static int set_listening(struct worker *w, bool on)
{
	struct epoll_event ev = {.events = EPOLLIN | EPOLLEXCLUSIVE};
	int i, rc = 0;

	if (w->listening == on)
		return 0;
	for (i = 0; on && i < w->nlsrc; i++) {
		ev.data.ptr = &w->lsrc[i];
		if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, w->lsrc[i].fd, &ev) < 0) {
			rc = -errno;
			break;
		}
	}
	if (on && rc == 0) {
		w->listening = true;
		return 0;
	}
	/* Off, or undoing a partial add; removing what is in the set cannot fail. */
	if (!on)
		i = w->nlsrc;
	while (i-- > 0)
		epoll_ctl(w->epfd, EPOLL_CTL_DEL, w->lsrc[i].fd, NULL);
	w->listening = false;
	return rc;
}

/* Listens again unless a reason not to remains; if it cannot, retries soon. */
static void maybe_resume(struct worker *w)
{
	int rc;

	if (w->full || w->resume_ms || w->stopping)
		return;
	rc = set_listening(w, true);
	if (rc < 0) {
		metrics_add(w->m, METRICS_ACCEPT_PAUSES, 1);
		engine_log_accept_error(rc);
		w->resume_ms = clock_now_ms() + ENGINE_ACCEPT_PAUSE_MS;
	}
}

/* Tells every worker that a --max-conns slot freed. */
static void wake_all(struct epoll_engine *eng)
{
	uint64_t one = 1;

	for (int i = 0; i < eng->n; i++)
		if (write(eng->w[i].wake.fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
			log_debug("wake: %s", strerror(errno));
}

static void close_conn(struct worker *w, struct econn *ec, enum conn_end end)
{
	if (w->hot == ec) {
		w->hot = NULL; /* close(2) takes it out of the epoll set if it is still there */
		w->hot_detached = false;
	}
	list_remove(ec);
	conn_ended(w->m, ec->src.fd, &ec->st, end);
	close(ec->src.fd);
	pool_put(&w->pool, ec->c.buf);
	free(ec);
	w->nconns--;
	if (server_release_slot(w->srv))
		wake_all(w->eng);
}

static int add_conn(struct worker *w, int fd)
{
	struct econn *ec = calloc(1, sizeof(*ec));
	struct epoll_event ev = {.events = EPOLLIN};
	uint64_t now = clock_now_ms();

	if (!ec)
		return -ENOMEM;
	ec->src = (struct source){.kind = SRC_CONN, .fd = fd};
	ec->events = EPOLLIN;
	conn_init(&ec->c, NULL, w->pool.size, server_conn_flags(w->srv));
	conn_stats_start(&ec->st, fd, now);
	if (w->srv->cfg->proxy_protocol) {
		ec->st.proxy = proxy_stage_new(now, (uint64_t)w->srv->cfg->proxy_timeout_ms);
		if (!ec->st.proxy) {
			free(ec);
			return -ENOMEM;
		}
	}
	ev.data.ptr = ec;
	if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		proxy_stage_free(ec->st.proxy);
		free(ec);
		return -errno;
	}
	if (ec->st.proxy)
		list_push(&w->header, ec, ec->st.proxy->deadline);
	else
		list_push(&w->active, ec, active_deadline(w, now));
	w->nconns++;
	metrics_add(w->m, METRICS_ACCEPTED, 1);
	return 0;
}

/* Accepts one connection; returns 0, or -errno (-EBUSY: no free slot). */
static int accept_one(struct worker *w, int lfd)
{
	int fd, rc;

	if (!server_take_slot(w->srv))
		return -EBUSY;
	fd = net_accept(lfd);
	if (fd >= 0) {
		rc = add_conn(w, fd);
		if (rc == 0)
			return 0;
		close(fd);
		fd = rc;
	}
	if (server_release_slot(w->srv))
		wake_all(w->eng);
	return fd;
}

static void handle_accept(struct worker *w, int lfd)
{
	for (int i = 0; i < ACCEPT_BATCH; i++) {
		int rc = accept_one(w, lfd);

		if (rc == 0)
			continue;
		if (rc == -EBUSY) {
			/* Leave the backlog be until a slot frees (wake_all). */
			metrics_add(w->m, METRICS_MAXCONNS_PAUSES, 1);
			w->full = true;
			set_listening(w, false);
			return;
		}
		switch (net_accept_error_next(rc)) {
		case NET_ACCEPT_NEXT:
			continue;
		case NET_ACCEPT_EMPTY:
			return;
		case NET_ACCEPT_PAUSE:
			if (rc == -EINVAL && server_stop_requested(w->srv))
				return; /* the listener was shut for the stop (echod.c) */
			/* No busy loop on EMFILE: try again in a moment. */
			metrics_add(w->m, METRICS_ACCEPT_PAUSES, 1);
			engine_log_accept_error(rc);
			w->resume_ms = clock_now_ms() + ENGINE_ACCEPT_PAUSE_MS;
			set_listening(w, false);
			return;
		}
	}
}

static void handle_wake(struct worker *w)
{
	uint64_t n;

	if (read(w->wake.fd, &n, sizeof(n)) < 0)
		return;
	w->full = false;
	maybe_resume(w);
}

static void begin_stop(struct worker *w)
{
	epoll_ctl(w->epfd, EPOLL_CTL_DEL, w->stop.fd, NULL);
	w->stopping = true;
	w->grace_deadline = clock_now_ms() + (uint64_t)w->srv->cfg->grace_ms;
	set_listening(w, false);
}

/*
 * One recv(2) into the connection.  Returns the byte count, 0 at EOF,
 * -EAGAIN when there is nothing to read (or no wish to), else -errno.
 */
static ssize_t read_some(struct worker *w, struct econn *ec)
{
	unsigned char *p;
	size_t space;
	ssize_t n;

	if (!conn_wants_read(&ec->c))
		return -EAGAIN;
	if (!ec->c.buf) {
		p = pool_get(&w->pool);
		if (!p)
			return -ENOMEM;
		conn_lend(&ec->c, p);
	}
	space = conn_read_buf(&ec->c, &p);
	n = recv(ec->src.fd, p, space, 0);
	if (n < 0)
		return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? -EAGAIN : -errno;
	conn_read_done(&ec->c, (size_t)n);
	if (n > 0)
		conn_stats_in(&ec->st, w->m, (size_t)n);
	return n;
}

/*
 * --proxy-protocol: one recv(2) into the header buffer.  Returns -EAGAIN
 * while the header is incomplete, -ECONNABORTED once it closed the
 * connection, else (PROXY_OK) how many bytes after the header it handed to
 * conn as just read.
 */
static ssize_t read_header(struct worker *w, struct econn *ec)
{
	struct proxy_stage *ps = ec->st.proxy;
	const uint8_t *data;
	unsigned char *p;
	size_t room, n;
	ssize_t got;
	enum proxy_result r;

	p = proxy_stage_room(ps, &room);
	got = recv(ec->src.fd, p, room, 0);
	if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return -EAGAIN;
	if (got < 0) {
		close_conn(w, ec, CONN_END_RESET);
		return -ECONNABORTED;
	}
	if (got > 0)
		conn_stats_in(&ec->st, w->m, (size_t)got);
	r = proxy_stage_arrived(ps, (size_t)got);
	if (r == PROXY_NEED_MORE)
		return -EAGAIN;
	if (r != PROXY_OK) {
		conn_stats_refused(&ec->st, r);
		close_conn(w, ec, conn_end_proxy(r));
		return -ECONNABORTED;
	}
	list_push(&w->active, ec, active_deadline(w, clock_now_ms()));
	n = proxy_stage_data(ps, &data);
	if (n) {
		p = pool_get(&w->pool);
		if (!p) {
			close_conn(w, ec, CONN_END_RESET);
			return -ECONNABORTED;
		}
		conn_lend(&ec->c, p);
		conn_read_buf(&ec->c, &p); /* the whole buffer: --buffer >= PROXY_HEADER_MAX */
		memcpy(p, data, n);
		conn_read_done(&ec->c, n);
	}
	proxy_stage_done(ps);
	return (ssize_t)n;
}

/* Sends what is pending until done or the socket is full.  Returns bytes sent or -errno. */
static ssize_t write_some(struct worker *w, struct econn *ec)
{
	const unsigned char *p;
	ssize_t n, sent = 0;
	size_t len;

	while ((len = conn_send_buf(&ec->c, &p)) > 0) {
		n = send(ec->src.fd, p, len, MSG_NOSIGNAL);
		if (n < 0)
			return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? sent
											 : -errno;
		conn_sent(&ec->c, (size_t)n);
		conn_stats_out(&ec->st, w->m, (size_t)n);
		sent += n;
	}
	return sent;
}

/* Follows the protocol's verdicts; returns true when ec may be closed. */
static bool advance(struct worker *w, struct econn *ec, bool moved)
{
	uint64_t now;

	if (conn_wants_shutdown(&ec->c)) {
		shutdown(ec->src.fd, SHUT_WR);
		conn_shutdown(&ec->c);
		list_push(&w->drain, ec, clock_now_ms() + CONN_DRAIN_MS);
	} else if (moved && ec->list == &w->active && w->srv->cfg->idle_timeout_ms) {
		now = clock_now_ms();
		list_push(&w->active, ec, active_deadline(w, now));
	}
	/* Lend the buffer back while nothing is in flight. */
	pool_put(&w->pool, conn_reclaim(&ec->c));
	return conn_done(&ec->c);
}

/* The events the connection waits for. */
static uint32_t interest(const struct econn *ec)
{
	return (conn_wants_read(&ec->c) ? EPOLLIN : 0) | (conn_unsent(&ec->c) ? EPOLLOUT : 0);
}

/*
 * --busy-poll: the hot connection is read directly every turn, so it leaves
 * the epoll set: then the peer's send finds no waiter on the socket and
 * never runs epoll's wake-up callback, whose lock and ready list this
 * worker's epoll_wait(2) takes every turn, on the other CPU (cache lines
 * that would cross between the two CPUs on every message).
 */
static void detach_hot(struct worker *w)
{
	if (epoll_ctl(w->epfd, EPOLL_CTL_DEL, w->hot->src.fd, NULL) == 0) {
		w->hot_detached = true;
		w->hot->events = 0;
	}
}

/*
 * Ends the hot connection's turn: back in the epoll set with what it waits
 * for, if it had left it.  A connection that cannot go back (out of memory
 * in the kernel) would never be served again: it is reset.
 */
static void cool_hot(struct worker *w)
{
	struct econn *ec = w->hot;
	struct epoll_event ev;

	w->hot = NULL;
	w->hot_streak = 0;
	if (!ec || !w->hot_detached)
		return;
	w->hot_detached = false;
	ev = (struct epoll_event){.events = interest(ec), .data.ptr = ec};
	if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, ec->src.fd, &ev) == 0)
		ec->events = ev.events;
	else
		close_conn(w, ec, CONN_END_RESET);
}

/* Registers interest in exactly what the connection waits for. */
static void update_interest(struct worker *w, struct econn *ec)
{
	uint32_t want = interest(ec);
	struct epoll_event ev = {.events = want, .data.ptr = ec};

	if (want == ec->events || (w->hot == ec && w->hot_detached))
		return; /* detached: poll_hot() reads it, or cools it when it waits for more */
	if (epoll_ctl(w->epfd, EPOLL_CTL_MOD, ec->src.fd, &ev) == 0)
		ec->events = want;
}

static void handle_conn(struct worker *w, struct econn *ec, uint32_t events)
{
	ssize_t n = -EAGAIN, sent;

	if (events & EPOLLERR) {
		close_conn(w, ec, CONN_END_RESET);
		return;
	}
	if (proxy_stage_pending(ec->st.proxy)) {
		n = read_header(w, ec);
		if (n < 0)
			return; /* more to come, or closed */
	} else if (events & (EPOLLIN | EPOLLHUP)) {
		n = read_some(w, ec);
	}
	if (n > 0 && w->srv->cfg->busy_poll) {
		if (w->hot != ec)
			cool_hot(w);
		w->hot = ec;
		w->hot_last_ns = clock_now_ns();
	}
	sent = n < 0 && n != -EAGAIN ? n : write_some(w, ec);
	/* Hung up both ways with nothing left to read: nothing can move again. */
	if (sent == 0 && (events & EPOLLHUP) && n == -EAGAIN)
		sent = -EPIPE;
	if (sent < 0) {
		close_conn(w, ec, CONN_END_RESET);
		return;
	}
	/* Bytes moving either way keep a connection from being idle. */
	if (advance(w, ec, n >= 0 || sent > 0)) {
		close_conn(w, ec, conn_end_done(&ec->c));
		return;
	}
	update_interest(w, ec);
}

/* Closes connections whose deadline passed, from the head of list l. */
static void expire_list(struct worker *w, struct conn_list *l, uint64_t now, enum conn_end end)
{
	while (l->head && l->head->deadline && l->head->deadline <= now) {
		struct econn *ec = l->head;

		if (l == &w->drain)
			end = conn_end_done(&ec->c); /* the echo was delivered */
		else if (l == &w->header)
			conn_stats_refused(&ec->st, PROXY_ERR_TIMEOUT);
		close_conn(w, ec, end);
	}
}

static void close_all(struct worker *w, enum conn_end end)
{
	while (w->header.head)
		close_conn(w, w->header.head, end);
	while (w->active.head)
		close_conn(w, w->active.head, end);
	while (w->drain.head)
		close_conn(w, w->drain.head, conn_end_done(&w->drain.head->c));
}

static void expire(struct worker *w)
{
	uint64_t now = clock_now_ms();

	expire_list(w, &w->header, now, CONN_END_PROXY_TIMEOUT);
	expire_list(w, &w->active, now, CONN_END_IDLE);
	expire_list(w, &w->drain, now, CONN_END_ONCE);
	if (w->resume_ms && now >= w->resume_ms) {
		w->resume_ms = 0;
		maybe_resume(w);
	}
	if (w->stopping && now >= w->grace_deadline)
		close_all(w, CONN_END_GRACE);
}

/* Milliseconds until the nearest deadline, for epoll_wait(2); -1 for none. */
static int next_timeout(const struct worker *w)
{
	uint64_t d = 0;

	if (w->header.head)
		d = w->header.head->deadline;
	if (w->active.head)
		d = deadline_earliest(d, w->active.head->deadline);
	if (w->drain.head)
		d = deadline_earliest(d, w->drain.head->deadline);
	d = deadline_earliest(d, w->resume_ms);
	if (w->stopping)
		d = deadline_earliest(d, w->grace_deadline);
	return deadline_timeout_ms(d, clock_now_ms());
}

static void dispatch(struct worker *w, const struct epoll_event *ev)
{
	struct source *src = ev->data.ptr;

	switch (src->kind) {
	case SRC_LISTENER:
		handle_accept(w, src->fd);
		break;
	case SRC_STOP:
		begin_stop(w);
		break;
	case SRC_WAKE:
		handle_wake(w);
		break;
	case SRC_CONN:
		handle_conn(w, (struct econn *)src, ev->events);
		break;
	}
}

/*
 * --busy-poll, after an epoll_wait(2) that found nothing: reads the
 * connection that last brought bytes directly, up to HOT_TRIES times, the
 * way a spinning recv(2) does, so its next message costs one system call
 * to find instead of two (epoll_wait, then recv).  The bytes take the
 * normal path (handle_conn).  Bounded so the other connections wait at most
 * HOT_TRIES reads more for their turn; stops at the first read that finds
 * bytes, and the connection stops being hot once it closes, has something
 * else to wait for, or has been silent for HOT_IDLE_NS.  After
 * HOT_DETACH_STREAK messages in a row found this way it leaves the epoll
 * set (detach_hot()) and is read every turn, events or not, until it cools.
 */
static void poll_hot(struct worker *w)
{
	for (int i = 0; i < HOT_TRIES && w->hot; i++) {
		struct econn *ec = w->hot;
		uint64_t last = w->hot_last_ns;

		if (proxy_stage_pending(ec->st.proxy) || !conn_wants_read(&ec->c) ||
		    conn_unsent(&ec->c) || clock_now_ns() - last > HOT_IDLE_NS) {
			cool_hot(w);
			return;
		}
		handle_conn(w, ec, EPOLLIN);
		if (w->hot != ec)
			return; /* it closed */
		if (w->hot_last_ns != last) {
			if (++w->hot_streak >= HOT_DETACH_STREAK && !w->hot_detached)
				detach_hot(w);
			return; /* it read bytes */
		}
	}
}

static int serve(void *ctx, int index)
{
	struct worker *w = &((struct epoll_engine *)ctx)->w[index];
	bool spin = w->srv->cfg->busy_poll;
	struct epoll_event ev[EVENTS_MAX];
	int n;

	while (!w->stopping || w->nconns > 0) {
		n = epoll_wait(w->epfd, ev, EVENTS_MAX, spin ? 0 : next_timeout(w));
		if (n < 0 && errno != EINTR) {
			close_all(w, CONN_END_RESET);
			return -errno;
		}
		for (int i = 0; i < n; i++)
			dispatch(w, &ev[i]);
		if (spin && (n == 0 || w->hot_detached))
			poll_hot(w);
		if (n <= 0 && spin)
			cpu_relax();
		expire(w);
	}
	return 0;
}

static int watch(struct worker *w, struct source *src)
{
	struct epoll_event ev = {.events = EPOLLIN, .data.ptr = src};

	return epoll_ctl(w->epfd, EPOLL_CTL_ADD, src->fd, &ev) < 0 ? -errno : 0;
}

/* Sets up one worker's epoll instance, on its thread; returns 0 or -errno. */
static int setup(void *ctx, int index)
{
	struct epoll_engine *eng = ctx;
	struct server *srv = eng->srv;
	struct worker *w = &eng->w[index];

	w->eng = eng;
	w->srv = srv;
	w->m = &srv->metrics.w[index];
	w->pool.size = (size_t)srv->cfg->buffer_bytes;
	w->stop = (struct source){.kind = SRC_STOP, .fd = srv->stop_fd};
	w->wake = (struct source){.kind = SRC_WAKE, .fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)};
	w->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (w->epfd < 0 || w->wake.fd < 0)
		return -errno;
	w->lsrc = calloc((size_t)srv->nlisteners, sizeof(*w->lsrc));
	if (!w->lsrc)
		return -ENOMEM;
	for (int i = 0; i < srv->nlisteners; i++)
		if (listener_serves(&srv->listeners[i], index))
			w->lsrc[w->nlsrc++] =
				(struct source){.kind = SRC_LISTENER, .fd = srv->listeners[i].fd};
	if (watch(w, &w->stop) < 0 || watch(w, &w->wake) < 0)
		return -errno;
	if (srv->cfg->busy_poll)
		busy_poll_epoll(w->epfd, index == 0); /* soft: the spin works without it */
	return set_listening(w, true);
}

static void worker_free(struct worker *w)
{
	if (w->epfd >= 0)
		close(w->epfd);
	if (w->wake.fd >= 0)
		close(w->wake.fd);
	free(w->lsrc);
	pool_drain(&w->pool);
}

static int probe(char *why, size_t whylen)
{
	int fd = epoll_create1(EPOLL_CLOEXEC);

	if (fd < 0) {
		snprintf(why, whylen, "epoll_create1: %s", strerror(errno));
		return -errno;
	}
	close(fd);
	return 0;
}

/*
 * The workers are freed only once all are joined: any of them may write to
 * another's wake-up eventfd until then.
 */
static int run(struct server *srv)
{
	struct epoll_engine eng = {.srv = srv, .n = srv->workers};
	struct worker_ops ops = {
		.ctx = &eng, .setup = setup, .serve = serve, .pin = srv->pin, .batch = srv->batch};
	int rc;

	eng.w = calloc((size_t)eng.n, sizeof(*eng.w));
	if (!eng.w)
		return -ENOMEM;
	for (int i = 0; i < eng.n; i++)
		eng.w[i].epfd = eng.w[i].wake.fd = -1;
	rc = workers_run(&ops, eng.n);
	for (int i = 0; i < eng.n; i++)
		worker_free(&eng.w[i]);
	free(eng.w);
	return rc;
}

const struct engine engine_epoll = {
	.name = "epoll",
	.has_workers = true,
	.probe = probe,
	.run = run,
};
