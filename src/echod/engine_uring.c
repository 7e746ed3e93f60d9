/*
 * engine_uring.c - io_uring: one ring per worker thread, completions only.
 *
 * Techniques: multishot accept on every listener; multishot receive into a
 * provided buffer ring (the kernel picks the buffer); the echo is sent
 * straight from the received buffer, which goes back to the ring when the
 * send completes; one
 * io_uring_submit_and_wait_timeout() per loop, so a whole batch of sends,
 * re-arms and buffer returns costs one system call.  The ring is set up
 * with SINGLE_ISSUER|DEFER_TASKRUN (6.1), else COOP_TASKRUN (5.19), else
 * plainly, falling back on -EINVAL.
 *
 * Needs: Linux 6.0 (multishot receive, provided buffer rings; probe()
 * checks) and liburing 2.2 or later.  liburing 2.3 (Debian 12) has no io_uring_setup_buf_ring(),
 * so setup_bufs() maps and registers the buffer ring by hand.  Built
 * without liburing, the file compiles to a probe() that says so.
 *
 * The protocol (once mode, backpressure, half-close, lingering drain) is
 * conn.c's, through its borrowed-buffer variant.  When the buffer ring runs
 * dry the kernel ends a connection's receive with -ENOBUFS; the connection
 * then waits, reading nothing, until buffers come back (starve_rearm()), so
 * reads slow down and nothing is lost.
 *
 * --max-conns: multishot accept cannot be told "one more"; when a completed
 * accept finds every slot taken, the socket is parked (not read) and the
 * accepts are cancelled, so the rest stay in the backlog.  A freed slot
 * serves the parked sockets first, then re-arms accept; other workers learn
 * of it through their eventfd.
 *
 * Stalled echoes: the buffer ring is shared by a worker's connections, so a
 * connection whose echo cannot be sent at once must not keep ring buffers.
 * Bytes that cannot go straight out of the ring (a send is in flight, or a
 * short send left some) are copied into a private per-connection buffer of
 * --buffer bytes, taken from a small pool on demand and given back when
 * drained; the ring buffer returns at once.  A send stuck on a ring buffer
 * is cancelled when the connection reaches backpressure, or at the next
 * scan (within 2 * SCAN_MS), and its bytes join the private copy; a send
 * queued in the current batch has not been tried yet and is left to the
 * scan (a bulk sender reaches backpressure at every full buffer, and its
 * send nearly always completes at once: a cancel would be wasted).
 *
 * Buffers: --buffer bytes each (16 KiB by default, at most 64 KiB), as
 * many as fit in 4 MiB per worker (256 by default): a bulk sender's read
 * and its echo then move as much per call as epoll's recv and send.  The
 * ring is used in turn, so all of it is touched sooner or later; 4 MiB is
 * what 1024 x 4 KiB cost before.
 *
 * Multishot receive cannot be told "enough" and would overshoot --buffer
 * by whatever the socket holds, so a connection starts with reads sized by
 * conn_room() and earns multishot by ping-pong traffic (arm_recv()).
 *
 * Trade-off: a stalled connection costs its private buffer, --buffer bytes,
 * plus what a multishot receive had already taken when it overshot (once
 * per connection, at most the ring; sized reads follow).  The common case
 * (every send completes) copies nothing; bulk senders pay one receive SQE
 * per buffer instead of multishot.  Multishot is also not re-armed while an
 * echo is pending: tried, it halved the SQEs in ping-pong but doubled the
 * io_uring_enter calls, saved no CPU, and made an overshoot likely for a
 * flooding client whose first read was short.
 *
 * Bulk senders: a read that stops short of the buffer (at a segment edge)
 * leaves a sliver of room while its echo is in flight; reading the sliver
 * then split every later buffer in two (16331 + 53 bytes on loopback), so
 * receives averaged 8 KiB, a third under 1 KiB.  A read now waits for the
 * send unless it could take half a buffer (arm_or_wait()): receives average
 * 15 KiB and the server CPU per 64 KiB message fell by about 30%.  Linking
 * the receive behind the send (IOSQE_IO_LINK, the send with MSG_WAITALL)
 * halved the io_uring_enter calls on top of that but saved no measurable
 * CPU, so it is not done.
 *
 * Test-only: ECHOD_URING_BUFS=N (a power of two) sets the number of
 * provided buffers per worker, so tests can make the ring run dry.
 */
#include "engine.h"

#ifdef HAVE_LIBURING

#include "clock.h"
#include "conn.h"
#include "log.h"
#include "sandbox.h"

#include <errno.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

/*
 * user_data layout, 64 bits:
 *   bits  0..7   enum op: what completed
 *   bits  8..31  generation of a connection's receive (RECV only), so a
 *                cancel can never hit a receive armed after it
 *   bits 32..63  index: connection table slot (RECV, SEND) or listener (ACCEPT)
 */
enum op {
	OP_ACCEPT,
	OP_RECV,
	OP_SEND,
	OP_STOP, /* poll on srv->stop_fd */
	OP_WAKE, /* poll on this worker's eventfd: a --max-conns slot freed */
	OP_CANCEL,
};

#define UD(op, gen, idx) ((uint64_t)(op) | (uint64_t)((gen)&0xffffff) << 8 | (uint64_t)(idx) << 32)
#define UD_OP(ud)	 ((enum op)((ud)&0xff))
#define UD_GEN(ud)	 ((uint32_t)((ud) >> 8) & 0xffffff)
#define UD_IDX(ud)	 ((uint32_t)((ud) >> 32))

#define RING_ENTRIES 1024
#define CQ_ENTRIES   (8 * RING_ENTRIES) /* multishot posts many per SQE */
#define BUF_GROUP    0
/*
 * Provided buffers are --buffer bytes (16 KiB by default), up to this: a bulk
 * sender's sized read then takes as much as epoll's recv, and its echo goes
 * out in as few segments.  Small messages touch only the first page of each.
 */
#define STREAM_BUF_MAX (64u << 10)
#define BUFS_DEFAULT   1024
#define BUFS_BYTES_MAX (4u << 20) /* per worker: the ring is cycled, so all of it is touched */
#define SCAN_MS	       50	  /* timer granularity: idle, drain, grace, pauses, stuck sends */
#define EXIT_SLACK_MS  1000	  /* after the grace: wait this long for cancels */
#define NOBUF	       (-1)
#define POOL_MAX       64 /* free private buffers a worker keeps, and --buffer times this in bytes */

/*
 * A connection's private copy of unsent bytes, in echo order at buf + off.
 * retired: an old buf that a send in flight still reads, freed when it lands.
 */
struct spill {
	unsigned char *buf, *retired;
	size_t cap, off, len;
};

struct pooled {
	unsigned char *buf;
	size_t cap;
};

struct uconn {
	struct conn c;
	int fd;
	bool in_use;
	bool recv_armed, recv_cancel;
	bool send_busy;
	bool send_cancel; /* a send stuck on a ring buffer is being cancelled */
	bool starved;	  /* receive ended with -ENOBUFS: waits for buffers */
	bool closing;
	bool broken; /* reset, or a send failed */
	uint32_t rgen;
	bool sized, overshot;	 /* see arm_recv() */
	uint32_t rlen;		 /* size of the read armed; 0: multishot */
	int32_t sbid;		 /* ring buffer the send in flight reads, else NOBUF */
	uint32_t slen;		 /* its length */
	struct spill own;	 /* the rest of the echo, after sbid's bytes */
	uint64_t send_ms;	 /* when the send from sbid started */
	uint64_t send_batch;	 /* and in which batch */
	uint64_t last_ms;	 /* last progress, for --idle-timeout */
	uint64_t drain_deadline; /* 0: not draining */
	uint32_t next_free;
};

struct uring_shared {
	struct server *srv;
	int *wake_fds; /* one eventfd per worker */
	/* Start-up rendezvous: nobody serves unless every worker set up. */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int nready, nstarted;
	bool failed, go;
};

struct worker {
	struct io_uring ring;
	struct server *srv;
	struct uring_shared *sh;
	struct metrics_worker *m;
	int id;
	int wake_fd;
	uint64_t wake_buf;

	struct io_uring_buf_ring *br;
	size_t br_bytes;
	unsigned char *bufs;
	uint32_t nbufs, buf_bytes;
	int br_add;	      /* buffers returned since the last advance */
	bool ran_dry;	      /* logged once, at debug level */
	uint32_t nfree;	      /* buffers the kernel may use */
	uint32_t nring_sends; /* sends in flight from ring buffers */

	struct pooled pool[POOL_MAX]; /* free private buffers, most of --buffer bytes */
	int npool;
	size_t pool_bytes;

	struct uconn *conns;
	uint32_t nconns_cap, free_head, live, nstarved, ndraining, scan_from;

	bool *acc_armed;
	int *parked; /* accepted while every slot was taken */
	int nparked, parked_cap;
	bool full;
	uint64_t pause_until;
	bool stopping;
	uint64_t now;	/* ms, read once per batch */
	uint64_t batch; /* batches run, to tell a send queued in this one */
	uint64_t grace_deadline, next_scan;
};

static int probe_flags(struct io_uring *ring, unsigned entries, unsigned cq_entries)
{
	static const unsigned try_flags[] = {
		IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN,
		IORING_SETUP_COOP_TASKRUN,
		0,
	};
	int rc = -EINVAL;

	for (size_t i = 0; i < sizeof(try_flags) / sizeof(try_flags[0]); i++) {
		/* Disabled until sandbox_ring_start() restricts it (probe: never). */
		struct io_uring_params p = {.flags = try_flags[i] | IORING_SETUP_R_DISABLED};

		if (cq_entries) {
			p.flags |= IORING_SETUP_CQSIZE;
			p.cq_entries = cq_entries;
		}
		rc = io_uring_queue_init_params(entries, ring, &p);
		if (rc != -EINVAL)
			return rc;
	}
	return rc;
}

/* Maps and registers a buffer ring of n entries; liburing 2.4 has this as a helper. */
static struct io_uring_buf_ring *map_buf_ring(struct io_uring *ring, uint32_t n, size_t *bytes,
					      int *err)
{
	struct io_uring_buf_reg reg = {.ring_entries = n, .bgid = BUF_GROUP};
	void *p;

	*bytes = (size_t)n * sizeof(struct io_uring_buf);
	p = mmap(NULL, *bytes, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
	if (p == MAP_FAILED) {
		*err = -errno;
		return NULL;
	}
	reg.ring_addr = (uint64_t)(uintptr_t)p;
	*err = io_uring_register_buf_ring(ring, &reg, 0);
	if (*err < 0) {
		munmap(p, *bytes);
		return NULL;
	}
	io_uring_buf_ring_init(p);
	return p;
}

static void reason(char *why, size_t whylen, const char *step, int err)
{
	const char *hint = "";

	if (err == -EPERM || err == -EACCES)
		hint = " (kernel.io_uring_disabled or a seccomp filter)";
	else if (err == -ENOSYS)
		hint = " (kernel built without io_uring, or a seccomp filter)";
	else if (err == -EINVAL && !strcmp(step, "io_uring_register_buf_ring"))
		hint = " (kernel older than 5.19)";
	snprintf(why, whylen, "%s: %s%s", step, strerror(-err), hint);
}

/*
 * Multishot receive (IORING_RECV_MULTISHOT, Linux 6.0) is a flag, not an
 * opcode, so the opcode probe cannot see it; IORING_OP_SEND_ZC came in the
 * same release and stands for it.  Without this check a 5.19 kernel would
 * pass the probe and then fail every connection's receive with -EINVAL.
 */
static int probe_kernel(struct io_uring *ring)
{
	struct io_uring_probe *p = io_uring_get_probe_ring(ring);
	bool ok = p && io_uring_opcode_supported(p, IORING_OP_SEND_ZC);

	if (p)
		io_uring_free_probe(p);
	return ok ? 0 : -EOPNOTSUPP;
}

/* Sets a ring up the way a worker would, checks the kernel, and tears it down. */
static int probe(char *why, size_t whylen)
{
	struct io_uring ring;
	struct io_uring_buf_ring *br;
	size_t bytes;
	int rc = probe_flags(&ring, 8, 0);

	if (rc < 0) {
		reason(why, whylen, "io_uring_queue_init_params", rc);
		return rc;
	}
	rc = probe_kernel(&ring);
	if (rc < 0) {
		io_uring_queue_exit(&ring);
		snprintf(why, whylen, "io_uring: kernel lacks multishot receive (needs Linux 6.0)");
		return rc;
	}
	br = map_buf_ring(&ring, 8, &bytes, &rc);
	if (br)
		munmap(br, bytes);
	io_uring_queue_exit(&ring);
	if (rc < 0)
		reason(why, whylen, "io_uring_register_buf_ring", rc);
	return rc < 0 ? rc : 0;
}

/* An SQE, submitting what is queued first if the ring is full. */
static struct io_uring_sqe *get_sqe(struct worker *w)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&w->ring);

	while (!sqe) {
		io_uring_submit(&w->ring);
		sqe = io_uring_get_sqe(&w->ring);
	}
	return sqe;
}

static unsigned char *buf_at(struct worker *w, int32_t bid)
{
	return w->bufs + (size_t)bid * w->buf_bytes;
}

/* Gives buffer bid back to the kernel; visible at the next flush_bufs(). */
static void recycle(struct worker *w, int32_t bid)
{
	io_uring_buf_ring_add(w->br, buf_at(w, bid), w->buf_bytes, (unsigned short)bid,
			      io_uring_buf_ring_mask(w->nbufs), w->br_add++);
	w->nfree++;
}

static void flush_bufs(struct worker *w)
{
	if (w->br_add) {
		io_uring_buf_ring_advance(w->br, w->br_add);
		w->br_add = 0;
	}
}

/* How many provided buffers: the test-only ECHOD_URING_BUFS, else a default. */
static uint32_t buf_count(uint32_t buf_bytes)
{
	const char *env = getenv("ECHOD_URING_BUFS");
	uint32_t n = BUFS_DEFAULT;

	if (env && atoi(env) > 0 && atoi(env) <= 32768)
		n = (uint32_t)atoi(env);
	while (n > 8 && (uint64_t)n * buf_bytes > BUFS_BYTES_MAX)
		n /= 2;
	while (n & (n - 1)) /* the ring wants a power of two */
		n &= n - 1;
	return n;
}

static int setup_bufs(struct worker *w)
{
	const struct config *cfg = w->srv->cfg;
	int rc;

	/* Once mode's chunk is "up to --buffer bytes": one read, one buffer. */
	w->buf_bytes = (uint32_t)cfg->buffer_bytes;
	if (!cfg->once && w->buf_bytes > STREAM_BUF_MAX)
		w->buf_bytes = STREAM_BUF_MAX;
	w->nbufs = buf_count(w->buf_bytes);
	w->bufs = malloc((size_t)w->nbufs * w->buf_bytes);
	if (!w->bufs)
		return -ENOMEM;
	w->br = map_buf_ring(&w->ring, w->nbufs, &w->br_bytes, &rc);
	if (!w->br)
		return rc;
	for (uint32_t i = 0; i < w->nbufs; i++)
		recycle(w, (int32_t)i);
	flush_bufs(w);
	return 0;
}

static struct uconn *conn_at(struct worker *w, uint32_t idx)
{
	return &w->conns[idx];
}

/* A free slot in the connection table, growing it; UINT32_MAX if out of memory. */
static uint32_t alloc_slot(struct worker *w)
{
	uint32_t idx, n = w->nconns_cap ? 2 * w->nconns_cap : 64;
	struct uconn *t;

	if (w->free_head == UINT32_MAX) {
		t = realloc(w->conns, n * sizeof(*t));
		if (!t)
			return UINT32_MAX;
		memset(t + w->nconns_cap, 0, (n - w->nconns_cap) * sizeof(*t));
		for (uint32_t i = n; i-- > w->nconns_cap;) {
			t[i].next_free = w->free_head;
			w->free_head = i;
		}
		w->conns = t;
		w->nconns_cap = n;
	}
	idx = w->free_head;
	w->free_head = w->conns[idx].next_free;
	return idx;
}

/*
 * Arms a receive into the ring: one read sized by conn_room(), or multishot.
 * A multishot receive cannot be told "enough": it overshoots the cap by
 * whatever the socket holds.  So a connection earns it by showing ping-pong
 * traffic (a sized read that drained the socket with no echo pending), uses
 * it only while nothing is pending, and loses it for good once it overshot.
 */
static void arm_recv(struct worker *w, uint32_t idx)
{
	struct uconn *u = conn_at(w, idx);
	struct io_uring_sqe *sqe = get_sqe(w);
	size_t room = conn_room(&u->c);

	u->rlen = 0;
	if (conn_pending_bytes(&u->c) || u->sized) {
		u->rlen = (uint32_t)(room < w->buf_bytes ? room : w->buf_bytes);
		io_uring_prep_recv(sqe, u->fd, NULL, u->rlen, 0);
	} else {
		io_uring_prep_recv_multishot(sqe, u->fd, NULL, 0, 0);
	}
	sqe->flags |= IOSQE_BUFFER_SELECT;
	sqe->buf_group = BUF_GROUP;
	u->rgen++;
	io_uring_sqe_set_data64(sqe, UD(OP_RECV, u->rgen, idx));
	u->recv_armed = true;
	u->recv_cancel = false;
}

static void cancel(struct worker *w, uint64_t ud)
{
	struct io_uring_sqe *sqe = get_sqe(w);

	io_uring_prep_cancel64(sqe, ud, 0);
	io_uring_sqe_set_data64(sqe, UD(OP_CANCEL, 0, 0));
}

static void cancel_recv(struct worker *w, uint32_t idx)
{
	struct uconn *u = conn_at(w, idx);

	if (u->recv_armed && !u->recv_cancel) {
		cancel(w, UD(OP_RECV, u->rgen, idx));
		u->recv_cancel = true;
	}
}

/*
 * A private buffer of at least n bytes, in multiples of --buffer so that
 * buffers grown past it for a receive's overshoot can be reused too.
 */
static unsigned char *own_alloc(struct worker *w, size_t n, size_t *cap)
{
	size_t std = (size_t)w->srv->cfg->buffer_bytes;
	unsigned char *buf;

	for (int i = w->npool - 1; i >= 0; i--) {
		if (w->pool[i].cap < n)
			continue;
		buf = w->pool[i].buf;
		*cap = w->pool[i].cap;
		w->pool_bytes -= *cap;
		w->pool[i] = w->pool[--w->npool];
		return buf;
	}
	*cap = n <= std ? std : (n + std - 1) / std * std;
	return malloc(*cap);
}

/* Keeps a free buffer for reuse within the pool's bounds, else frees it. */
static void own_release(struct worker *w, unsigned char *buf, size_t cap)
{
	size_t budget = POOL_MAX * (size_t)w->srv->cfg->buffer_bytes;

	if (buf && w->npool < POOL_MAX && w->pool_bytes + cap <= budget) {
		w->pool[w->npool++] = (struct pooled){buf, cap};
		w->pool_bytes += cap;
	} else {
		free(buf);
	}
}

/* The echo is drained: the connection lends its private buffer back. */
static void own_free(struct worker *w, struct uconn *u)
{
	own_release(w, u->own.buf, u->own.cap);
	free(u->own.retired);
	u->own = (struct spill){0};
}

/*
 * Makes room for more bytes after the unsent ones.  Bytes a send in flight
 * reads must not move, so then they are copied to a new buffer and the old
 * one retires until the send lands.  Returns 0 or -ENOMEM.
 */
static int own_room(struct worker *w, struct uconn *u, size_t more)
{
	struct spill *s = &u->own;
	bool in_flight = u->send_busy && u->sbid == NOBUF && !s->retired;
	size_t need = s->len + more, cap;
	unsigned char *p;

	if (s->buf && s->off + need <= s->cap)
		return 0;
	if (s->buf && need <= s->cap && !in_flight) {
		memmove(s->buf, s->buf + s->off, s->len);
		s->off = 0;
		return 0;
	}
	p = own_alloc(w, need, &cap);
	if (!p)
		return -ENOMEM;
	if (s->len)
		memcpy(p, s->buf + s->off, s->len);
	if (in_flight)
		s->retired = s->buf; /* freed, not pooled: the cap is not kept */
	else
		own_release(w, s->buf, s->cap);
	s->buf = p;
	s->cap = cap;
	s->off = 0;
	return 0;
}

static int own_append(struct worker *w, struct uconn *u, const unsigned char *p, size_t n)
{
	struct spill *s = &u->own;
	int rc = own_room(w, u, n);

	if (rc == 0) {
		memcpy(s->buf + s->off + s->len, p, n);
		s->len += n;
	}
	return rc;
}

/* Puts n bytes in front of the unsent ones; no send is in flight. */
static int own_prepend(struct worker *w, struct uconn *u, const unsigned char *p, size_t n)
{
	struct spill *s = &u->own;
	int rc = own_room(w, u, n);

	if (rc < 0)
		return rc;
	if (s->off < n) {
		memmove(s->buf + n, s->buf + s->off, s->len);
		s->off = n;
	}
	s->off -= n;
	s->len += n;
	memcpy(s->buf + s->off, p, n);
	return 0;
}

static void prep_send(struct worker *w, uint32_t idx, const unsigned char *p, size_t n)
{
	struct io_uring_sqe *sqe = get_sqe(w);

	io_uring_prep_send(sqe, conn_at(w, idx)->fd, p, n, MSG_NOSIGNAL);
	io_uring_sqe_set_data64(sqe, UD(OP_SEND, 0, idx));
	conn_at(w, idx)->send_busy = true;
}

/* Sends what is next: the ring buffer just received, else the private copy. */
static void send_next(struct worker *w, uint32_t idx)
{
	struct uconn *u = conn_at(w, idx);
	struct spill *s = &u->own;

	if (u->send_busy)
		return;
	if (u->sbid != NOBUF) {
		prep_send(w, idx, buf_at(w, u->sbid), u->slen);
		u->send_ms = w->now;
		u->send_batch = w->batch;
		w->nring_sends++;
	} else if (s->len) {
		/* Move down now, so bytes arriving during the send rarely need a new buffer. */
		if (s->off) {
			memmove(s->buf, s->buf + s->off, s->len);
			s->off = 0;
		}
		prep_send(w, idx, s->buf + s->off, s->len);
	}
}

/*
 * A send from a ring buffer that cannot finish soon: cancel it, so that the
 * buffer goes back to the ring; on_send() keeps its bytes in the private copy.
 */
static void unpin(struct worker *w, uint32_t idx)
{
	struct uconn *u = conn_at(w, idx);

	if (u->send_busy && u->sbid != NOBUF && !u->send_cancel && !u->closing) {
		cancel(w, UD(OP_SEND, 0, idx));
		u->send_cancel = true;
	}
}

/*
 * Takes len bytes of ring buffer bid for the echo.  With nothing ahead of
 * them they are sent straight from the ring (the fast path); else they are
 * copied behind what waits, and the buffer goes back to the ring at once, so
 * a peer that does not read its echo holds no ring buffer but the one sent.
 */
static void take(struct worker *w, struct uconn *u, int32_t bid, uint32_t len)
{
	if (!u->send_busy && u->sbid == NOBUF && !u->own.len) {
		u->sbid = bid;
		u->slen = len;
		return;
	}
	if (own_append(w, u, buf_at(w, bid), len) < 0)
		u->broken = true;
	recycle(w, bid);
}

/* A send from the ring landed with n bytes gone: keep the rest, return the buffer. */
static void ring_sent(struct worker *w, struct uconn *u, size_t n)
{
	if (n < u->slen && !u->broken && !u->closing &&
	    own_prepend(w, u, buf_at(w, u->sbid) + n, u->slen - n) < 0)
		u->broken = true;
	recycle(w, u->sbid);
	u->sbid = NOBUF;
	w->nring_sends--;
}

static void own_sent(struct worker *w, struct uconn *u, size_t n)
{
	struct spill *s = &u->own;

	free(s->retired);
	s->retired = NULL;
	s->off += n;
	s->len -= n;
	if (!s->len)
		own_free(w, u);
}

/* Tells every worker that a --max-conns slot freed. */
static void wake_all(struct worker *w)
{
	uint64_t one = 1;

	for (int i = 0; i < w->srv->workers; i++)
		if (write(w->sh->wake_fds[i], &one, sizeof(one)) < 0)
			log_debug("wake: %s", strerror(errno));
}

/* Frees the slot once no operation refers to it any more. */
static void maybe_free(struct worker *w, uint32_t idx)
{
	struct uconn *u = conn_at(w, idx);

	if (u->recv_armed || u->send_busy)
		return;
	if (u->sbid != NOBUF) {
		recycle(w, u->sbid);
		u->sbid = NOBUF;
	}
	own_free(w, u);
	close(u->fd);
	if (u->starved)
		w->nstarved--;
	if (u->drain_deadline)
		w->ndraining--;
	u->in_use = false;
	u->next_free = w->free_head;
	w->free_head = idx;
	w->live--;
	metrics_add(w->m, METRICS_CLOSED, 1);
	if (server_release_slot(w->srv))
		wake_all(w);
}

/* Closes a connection: cancels what is in flight, frees the slot when it lands. */
static void start_close(struct worker *w, uint32_t idx)
{
	struct uconn *u = conn_at(w, idx);

	if (u->closing)
		return;
	u->closing = true;
	cancel_recv(w, idx);
	if (u->send_busy)
		cancel(w, UD(OP_SEND, 0, idx));
	maybe_free(w, idx);
}

/* Shuts the write side when conn.c says the echo is complete. */
static void maybe_shutdown(struct worker *w, struct uconn *u)
{
	if (!conn_wants_shutdown(&u->c))
		return;
	shutdown(u->fd, SHUT_WR);
	conn_shutdown(&u->c);
	if (conn_draining(&u->c)) {
		u->drain_deadline = w->now + CONN_DRAIN_MS;
		w->ndraining++;
	}
}

/*
 * A bulk sender's read often stops short of the buffer (at a segment edge),
 * leaving a sliver of room while its echo is in flight.  Reading the sliver
 * then would split every later buffer in two (sliver + rest), doubling the
 * receives, sends and loopback segments.  So, with a
 * send in flight, a read waits for it unless it could take half a buffer;
 * on_send() re-arms it.  Ping-pong keeps far more room and reads at once.
 * The wait marks the connection a bulk sender: the read armed after the send
 * is sized, since a multishot one would overshoot by all the socket holds.
 */
static void arm_or_wait(struct worker *w, uint32_t idx)
{
	struct uconn *u = conn_at(w, idx);
	size_t full = u->c.cap < w->buf_bytes ? u->c.cap : w->buf_bytes;

	if (u->send_busy && conn_room(&u->c) < full / 2)
		u->sized = true;
	else
		arm_recv(w, idx);
}

/* Does what the connection's state asks for next: send, shut, read, close. */
static void advance(struct worker *w, uint32_t idx)
{
	struct uconn *u = conn_at(w, idx);
	bool want;

	if (u->closing) {
		maybe_free(w, idx);
		return;
	}
	if (u->broken) {
		metrics_add(w->m, METRICS_CONN_ERRORS, 1);
		start_close(w, idx);
		return;
	}
	send_next(w, idx);
	/*
	 * A send queued in this batch has not been tried yet: most complete at
	 * once (a bulk sender reaches backpressure at every full buffer), and
	 * one that does not is unpinned by scan() within 2 * SCAN_MS.
	 */
	if (conn_backpressured(&u->c) && u->send_batch != w->batch)
		unpin(w, idx);
	maybe_shutdown(w, u);
	if (conn_done(&u->c)) {
		start_close(w, idx);
		return;
	}
	want = conn_wants_read(&u->c);
	if (!want)
		cancel_recv(w, idx);
	else if (!u->recv_armed && !u->starved)
		arm_or_wait(w, idx);
}

static void starve(struct worker *w, struct uconn *u)
{
	if (!w->ran_dry) {
		w->ran_dry = true;
		log_debug("worker %d: buffer ring ran dry; reads wait for buffers", w->id);
	}
	if (!u->starved) {
		u->starved = true;
		w->nstarved++;
	}
}

static void on_recv(struct worker *w, struct io_uring_cqe *cqe)
{
	uint32_t idx = UD_IDX(cqe->user_data);
	struct uconn *u = conn_at(w, idx);
	bool current = UD_GEN(cqe->user_data) == (u->rgen & 0xffffff);
	int32_t bid = NOBUF;

	if (current && !(cqe->flags & IORING_CQE_F_MORE))
		u->recv_armed = false;
	if (cqe->flags & IORING_CQE_F_BUFFER) {
		bid = (int32_t)(cqe->flags >> IORING_CQE_BUFFER_SHIFT);
		w->nfree--;
	}
	if (cqe->res > 0) {
		size_t keep;

		if (current && u->rlen && !conn_pending_bytes(&u->c) &&
		    (uint32_t)cqe->res < u->rlen)
			u->sized = u->overshot;
		keep = conn_received_borrowed(&u->c, (size_t)cqe->res);

		if (keep && !u->closing)
			take(w, u, bid, (uint32_t)keep);
		else
			recycle(w, bid);
		metrics_add(w->m, METRICS_BYTES_IN, (unsigned long)cqe->res);
		if (conn_pending_bytes(&u->c) > u->c.cap)
			u->sized = u->overshot = true;
		u->last_ms = w->now;
	} else if (bid != NOBUF) {
		recycle(w, bid); /* a buffer with nothing in it */
	}
	if (cqe->res == 0) {
		conn_received_borrowed(&u->c, 0);
	} else if (cqe->res == -ENOBUFS) {
		starve(w, u);
	} else if (cqe->res < 0 && cqe->res != -ECANCELED) {
		u->broken = true;
	}
	advance(w, idx);
}

static void on_send(struct worker *w, struct io_uring_cqe *cqe)
{
	uint32_t idx = UD_IDX(cqe->user_data);
	struct uconn *u = conn_at(w, idx);
	bool unpinned = u->send_cancel && (cqe->res == -ECANCELED || cqe->res == -EINTR);
	size_t n = cqe->res > 0 ? (size_t)cqe->res : 0;

	u->send_busy = false;
	u->send_cancel = false;
	if (cqe->res < 0 && !unpinned && !u->closing)
		u->broken = true;
	if (n) {
		conn_sent(&u->c, n);
		metrics_add(w->m, METRICS_BYTES_OUT, (unsigned long)n);
		u->last_ms = w->now;
	}
	if (u->sbid != NOBUF)
		ring_sent(w, u, n);
	else
		own_sent(w, u, n);
	advance(w, idx);
}

/* Starts serving an accepted socket, which holds a --max-conns slot. */
static void add_conn(struct worker *w, int fd)
{
	uint32_t idx = alloc_slot(w);
	struct uconn *u;
	char peer[NET_NAMELEN];
	int one = 1;

	if (idx == UINT32_MAX) {
		/* Shed load: this one connection is refused, the server goes on. */
		close(fd);
		server_release_slot(w->srv);
		return;
	}
	/* As net_accept() does: an echo is written the moment it is read. */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	u = conn_at(w, idx);
	memset(u, 0, sizeof(*u));
	conn_init(&u->c, NULL, (size_t)w->srv->cfg->buffer_bytes, server_conn_flags(w->srv));
	u->fd = fd;
	u->in_use = true;
	u->sbid = NOBUF;
	u->sized = true;
	u->last_ms = w->now;
	w->live++;
	metrics_add(w->m, METRICS_ACCEPTED, 1);
	if (log_enabled(LOGL_DEBUG)) {
		net_format_peer(fd, peer, sizeof(peer));
		log_debug("connection from %s", peer);
	}
	advance(w, idx);
}

static void arm_accepts(struct worker *w)
{
	if (w->stopping || w->full || w->now < w->pause_until)
		return;
	for (int i = 0; i < w->srv->nlisteners; i++) {
		struct io_uring_sqe *sqe;

		if (w->acc_armed[i] || w->srv->listeners[i].type != SOCK_STREAM)
			continue;
		sqe = get_sqe(w);
		io_uring_prep_multishot_accept(sqe, w->srv->listeners[i].fd, NULL, NULL,
					       SOCK_CLOEXEC);
		io_uring_sqe_set_data64(sqe, UD(OP_ACCEPT, 0, i));
		w->acc_armed[i] = true;
	}
}

static void cancel_accepts(struct worker *w)
{
	for (int i = 0; i < w->srv->nlisteners; i++)
		if (w->acc_armed[i])
			cancel(w, UD(OP_ACCEPT, 0, i));
}

/* Every slot is taken: keep fd unread and stop accepting until one frees. */
static void park(struct worker *w, int fd)
{
	if (w->nparked == w->parked_cap) {
		int n = w->parked_cap ? 2 * w->parked_cap : 8;
		int *p = realloc(w->parked, (size_t)n * sizeof(*p));

		if (!p) {
			close(fd);
			return;
		}
		w->parked = p;
		w->parked_cap = n;
	}
	w->parked[w->nparked++] = fd;
	if (!w->full) {
		w->full = true;
		cancel_accepts(w);
	}
}

/* Serves parked sockets while slots allow, then accepts again. */
static void unpark(struct worker *w)
{
	int i = 0;

	while (i < w->nparked && server_take_slot(w->srv))
		add_conn(w, w->parked[i++]);
	memmove(w->parked, w->parked + i, (size_t)(w->nparked - i) * sizeof(*w->parked));
	w->nparked -= i;
	if (w->nparked == 0) {
		w->full = false;
		arm_accepts(w);
	}
}

static void on_accept(struct worker *w, struct io_uring_cqe *cqe)
{
	uint32_t i = UD_IDX(cqe->user_data);
	int fd = cqe->res;

	if (!(cqe->flags & IORING_CQE_F_MORE))
		w->acc_armed[i] = false;
	if (fd >= 0) {
		if (w->stopping)
			close(fd);
		else if (w->full || !server_take_slot(w->srv))
			park(w, fd);
		else
			add_conn(w, fd);
	} else if (fd == -EINVAL && server_stop_requested(w->srv)) {
		/* The listener was shut for the stop (echod.c): not a fault. */
	} else if (fd != -ECANCELED && fd != -ECONNABORTED && fd != -EINTR) {
		/*
		 * Out of descriptors, or an error that would recur at once:
		 * leave the backlog be for a while rather than spin.
		 */
		if (net_accept_error_is_resource(fd)) {
			metrics_add(w->m, METRICS_ACCEPT_PAUSES, 1);
			engine_log_accept_error(fd);
		} else {
			log_warn("accept on %s: %s", w->srv->listeners[i].name, strerror(-fd));
		}
		w->pause_until = w->now + ENGINE_ACCEPT_PAUSE_MS;
		if (w->acc_armed[i])
			cancel(w, UD(OP_ACCEPT, 0, i));
	}
	arm_accepts(w);
}

static void arm_poll(struct worker *w, int fd, enum op op)
{
	struct io_uring_sqe *sqe = get_sqe(w);

	io_uring_prep_poll_add(sqe, fd, POLLIN);
	io_uring_sqe_set_data64(sqe, UD(op, 0, 0));
}

/* Waits for a wake-up: a read of the (blocking) eventfd through the ring. */
static void arm_wake(struct worker *w)
{
	struct io_uring_sqe *sqe = get_sqe(w);

	io_uring_prep_read(sqe, w->wake_fd, &w->wake_buf, sizeof(w->wake_buf), 0);
	io_uring_sqe_set_data64(sqe, UD(OP_WAKE, 0, 0));
}

static void on_wake(struct worker *w, int res)
{
	if (res < 0) {
		/* Not re-armed: while full, scan() then looks for a freed slot. */
		log_warn("wake-up eventfd: %s", strerror(-res));
		return;
	}
	arm_wake(w);
	if (w->full)
		unpark(w);
}

static void on_stop(struct worker *w)
{
	w->stopping = true;
	w->grace_deadline = w->now + (uint64_t)w->srv->cfg->grace_ms;
	cancel_accepts(w);
	for (int i = 0; i < w->nparked; i++)
		close(w->parked[i]);
	w->nparked = 0;
}

static void handle(struct worker *w, struct io_uring_cqe *cqe)
{
	switch (UD_OP(cqe->user_data)) {
	case OP_ACCEPT:
		on_accept(w, cqe);
		break;
	case OP_RECV:
		on_recv(w, cqe);
		break;
	case OP_SEND:
		on_send(w, cqe);
		break;
	case OP_STOP:
		on_stop(w);
		break;
	case OP_WAKE:
		on_wake(w, cqe->res);
		break;
	case OP_CANCEL:
		break;
	}
}

/* Re-arms receives of starved connections while buffers are free, fairly. */
static void starve_rearm(struct worker *w)
{
	uint32_t budget = w->nfree, n = w->nconns_cap;

	for (uint32_t k = 0; k < n && w->nstarved && budget; k++) {
		uint32_t idx = (w->scan_from + k) % n;
		struct uconn *u = conn_at(w, idx);

		if (!u->in_use || !u->starved)
			continue;
		u->starved = false;
		w->nstarved--;
		budget--;
		w->scan_from = idx + 1;
		advance(w, idx);
	}
}

/*
 * Applies the deadlines (idle, drain, grace), unpins ring buffers from sends
 * stuck since the last scan, and retries what waits: starved reads, accepts.
 */
static void scan(struct worker *w)
{
	long idle_ms = w->srv->cfg->idle_timeout_ms;
	uint64_t now = w->now;
	bool grace_over = w->stopping && now >= w->grace_deadline;

	for (uint32_t idx = 0; idx < w->nconns_cap; idx++) {
		struct uconn *u = conn_at(w, idx);

		if (!u->in_use || u->closing)
			continue;
		if (idle_ms && !u->drain_deadline && now - u->last_ms >= (uint64_t)idle_ms) {
			metrics_add(w->m, METRICS_IDLE_TIMEOUTS, 1);
			start_close(w, idx);
		} else if ((u->drain_deadline && now >= u->drain_deadline) || grace_over) {
			start_close(w, idx);
		} else if (u->sbid != NOBUF && now - u->send_ms >= SCAN_MS) {
			unpin(w, idx); /* the peer does not read: free the ring buffer */
		}
	}
	if (w->nstarved)
		starve_rearm(w);
	if (w->pause_until && now >= w->pause_until)
		w->pause_until = 0;
	if (w->full && !w->stopping)
		unpark(w); /* in case a wake-up was missed */
	arm_accepts(w);
}

static bool needs_timer(const struct worker *w)
{
	return (w->srv->cfg->idle_timeout_ms && w->live) || w->ndraining || w->stopping ||
	       w->nstarved || w->pause_until || w->full || w->nring_sends;
}

/* One batch: submit everything queued, wait for completions, handle them all. */
static int run_batch(struct worker *w)
{
	struct __kernel_timespec ts = {.tv_nsec = SCAN_MS * 1000000L};
	struct io_uring_cqe *cqe;
	unsigned head, n = 0;
	int rc;

	flush_bufs(w);
	rc = io_uring_submit_and_wait_timeout(&w->ring, &cqe, 1, needs_timer(w) ? &ts : NULL, NULL);
	if (rc < 0 && rc != -ETIME && rc != -EINTR && rc != -EBUSY)
		return rc;
	w->now = clock_now_ms();
	w->batch++;
	io_uring_for_each_cqe(&w->ring, head, cqe)
	{
		handle(w, cqe);
		n++;
	}
	io_uring_cq_advance(&w->ring, n);
	if (w->nstarved && w->nfree)
		starve_rearm(w);
	if (needs_timer(w) && w->now >= w->next_scan) {
		scan(w);
		w->next_scan = w->now + SCAN_MS;
	}
	return 0;
}

static int loop(struct worker *w)
{
	uint64_t hard_stop = 0;
	int rc;

	w->now = clock_now_ms();
	arm_poll(w, w->srv->stop_fd, OP_STOP);
	arm_wake(w);
	arm_accepts(w);
	for (;;) {
		rc = run_batch(w);
		if (rc < 0)
			return rc;
		if (!w->stopping)
			continue;
		if (!hard_stop)
			hard_stop = w->grace_deadline + EXIT_SLACK_MS;
		if (w->live == 0 || w->now >= hard_stop)
			return 0;
	}
}

/*
 * Frees what the worker holds.  With connections still live (a stop whose
 * cancels did not land in time) the kernel may yet write into the buffers
 * while the ring is torn down, so those are left to the exiting process.
 */
static void worker_free(struct worker *w)
{
	bool quiet = w->live == 0;

	for (uint32_t i = 0; i < w->nconns_cap; i++)
		if (w->conns[i].in_use)
			close(w->conns[i].fd);
	for (int i = 0; i < w->nparked; i++)
		close(w->parked[i]);
	if (w->br)
		io_uring_unregister_buf_ring(&w->ring, BUF_GROUP);
	io_uring_queue_exit(&w->ring);
	if (quiet) {
		if (w->br)
			munmap(w->br, w->br_bytes);
		free(w->bufs);
	}
	while (w->npool)
		free(w->pool[--w->npool].buf);
	free(w->conns);
	free(w->parked);
	free(w->acc_armed);
}

/* Sets up this thread's ring and buffers; a ring is used by its creator only. */
static int worker_setup(struct worker *w)
{
	int rc = probe_flags(&w->ring, RING_ENTRIES, CQ_ENTRIES);

	if (rc < 0) {
		log_error("worker %d: io_uring_queue_init_params: %s", w->id, strerror(-rc));
		return rc;
	}
	w->free_head = UINT32_MAX;
	w->acc_armed = calloc((size_t)w->srv->nlisteners, sizeof(*w->acc_armed));
	rc = w->acc_armed ? setup_bufs(w) : -ENOMEM;
	if (rc < 0)
		log_error("worker %d: buffer ring: %s", w->id, strerror(-rc));
	else if ((rc = sandbox_ring_start(&w->ring, w->srv->cfg)) < 0)
		log_error("worker %d: ring restrictions: %s", w->id, strerror(-rc));
	if (rc < 0)
		worker_free(w);
	return rc;
}

/*
 * Reports this worker's set-up and waits for the others.  Returns true when
 * every worker is ready to serve; false, after a failure anywhere, for all.
 */
static bool rendezvous(struct uring_shared *sh, bool ok, bool is_main)
{
	bool go;

	pthread_mutex_lock(&sh->mu);
	sh->nready++;
	sh->failed |= !ok;
	if (is_main) {
		while (sh->nready < sh->nstarted)
			pthread_cond_wait(&sh->cv, &sh->mu);
		/* Every ring is up: no more, before anyone serves. */
		if (!sh->failed && sandbox_forbid_new_rings(sh->srv->cfg) < 0)
			sh->failed = true;
		sh->go = true;
		pthread_cond_broadcast(&sh->cv);
	} else {
		pthread_cond_signal(&sh->cv);
		while (!sh->go)
			pthread_cond_wait(&sh->cv, &sh->mu);
	}
	go = !sh->failed;
	pthread_mutex_unlock(&sh->mu);
	return go;
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	int rc = worker_setup(w);
	bool is_main = w->id == 0;

	if (!rendezvous(w->sh, rc == 0, is_main)) {
		if (rc == 0)
			worker_free(w); /* another worker failed: nobody serves */
		return (void *)(intptr_t)(rc < 0 ? rc : -EAGAIN);
	}
	rc = loop(w);
	worker_free(w);
	return (void *)(intptr_t)rc;
}

/* Starts workers 1..n-1; returns how many workers run, counting this thread. */
static int start_workers(struct uring_shared *sh, struct worker *ws, pthread_t *tids, int n)
{
	int i;

	for (i = 0; i < n; i++) {
		ws[i] = (struct worker){.srv = sh->srv,
					.sh = sh,
					.m = &sh->srv->metrics.w[i],
					.id = i,
					.wake_fd = sh->wake_fds[i]};
		if (i > 0 && pthread_create(&tids[i], NULL, worker_main, &ws[i]) != 0)
			break;
	}
	pthread_mutex_lock(&sh->mu);
	sh->nstarted = i;
	sh->failed |= i < n;
	pthread_mutex_unlock(&sh->mu);
	return i;
}

/* One eventfd per worker: blocking, so a read SQE on it waits for a wake-up. */
static int open_wake_fds(struct uring_shared *sh, int n)
{
	for (int i = 0; i < n; i++) {
		sh->wake_fds[i] = eventfd(0, EFD_CLOEXEC);
		if (sh->wake_fds[i] < 0)
			return -errno;
	}
	return 0;
}

static int run(struct server *srv)
{
	int n = srv->workers, started, rc;
	struct uring_shared sh = {.srv = srv,
				  .wake_fds = calloc((size_t)n, sizeof(int)),
				  .mu = PTHREAD_MUTEX_INITIALIZER,
				  .cv = PTHREAD_COND_INITIALIZER};
	struct worker *ws = calloc((size_t)n, sizeof(*ws));
	pthread_t *tids = calloc((size_t)n, sizeof(*tids));

	rc = sh.wake_fds && ws && tids ? 0 : -ENOMEM;
	for (int i = 0; sh.wake_fds && i < n; i++)
		sh.wake_fds[i] = -1;
	if (rc == 0)
		rc = open_wake_fds(&sh, n);
	if (rc < 0)
		goto out_free;
	started = start_workers(&sh, ws, tids, n);
	/* Worker 0 runs on this thread. */
	rc = (int)(intptr_t)worker_main(&ws[0]);
	for (int i = 1; i < started; i++) {
		void *ret;

		pthread_join(tids[i], &ret);
		if (rc == 0)
			rc = (int)(intptr_t)ret;
	}
	if (rc == 0 && started < n)
		rc = -EAGAIN;
out_free:
	for (int i = 0; sh.wake_fds && i < n; i++)
		if (sh.wake_fds[i] >= 0)
			close(sh.wake_fds[i]);
	free(sh.wake_fds);
	free(ws);
	free(tids);
	return rc;
}

#else /* !HAVE_LIBURING */

#include <errno.h>
#include <stdio.h>

static int probe(char *why, size_t whylen)
{
	snprintf(why, whylen, "built without liburing");
	return -ENOSYS;
}

static int run(struct server *srv)
{
	(void)srv;
	return -ENOSYS;
}

#endif /* HAVE_LIBURING */

const struct engine engine_uring = {
	.name = "uring",
	.has_workers = true,
	.probe = probe,
	.run = run,
};
