/*
 * engine_uring.c - io_uring: one ring per worker thread, completions only.
 *
 * A connection's life, as completions drive it:
 *
 *   accept -> recv (the kernel picks a buffer of the worker's ring) -> send
 *   straight from that buffer -> the buffer goes back to the ring -> recv
 *   -> ... -> EOF -> shutdown -> close
 *
 * The ring's buffers are shared by the worker's connections, so an echo
 * that cannot leave at once must not keep one: bytes that arrive while a
 * send is in flight, or that a short send left, are copied to the
 * connection's spill (spill.c) and their buffer returns; a send stuck on a
 * ring buffer is cancelled (unpin()) and its bytes spill too.  conn.c
 * counts the bytes (its borrowed mode) and says when to stop reading; an
 * empty ring ends a receive with -ENOBUFS and the connection waits for
 * buffers (starve_rearm()).  Reads are sized to conn's room until ping-pong
 * earns a multishot receive (arm_recv()).  Each batch of sends, re-arms and
 * buffer returns costs one io_uring_submit_and_wait_timeout().  Accepts are
 * multishot, except under --max-conns, which multishot cannot honour: then
 * a poll on each listener and one accept(2) per free slot (on_listen()).
 * Under --proxy-protocol a connection's first reads are plain ones into its
 * header buffer, not the ring's (on_header()); the bytes after the header
 * are spilled as if just received, then reads go to the ring as always.
 *
 * --busy-poll: each batch submits and collects completions without waiting
 * (io_uring_submit_and_get_events(): an io_uring_enter that runs the ring's
 * deferred work but never sleeps), and the next batch follows at once.
 * Between batches the worker reads the connection that last brought bytes
 * straight from its socket, as epoll's busy loop does (poll_hot()): found
 * that way, a message costs a recv(2) and a send(2), not the ring's
 * wake-up, deferred receive and send submission, which measured 1.5 to 2
 * us more per round trip (docs/engines.md).  The ring stays the owner of
 * the connection: its receive stays armed and finds nothing when the bytes
 * were taken, and whatever the direct send cannot take goes to the spill
 * like any stalled echo.
 *
 * Needs Linux 6.0 and liburing 2.2 (probe() checks); built without
 * liburing, the file compiles to a probe() that says so.  The choices and
 * their measurements are in docs/engines.md.  Test-only:
 * ECHOD_URING_BUFS=N (a power of two) sets the provided buffers per worker.
 */
#include "engine.h"

#ifdef HAVE_LIBURING

#include "busy_poll.h"
#include "clock.h"
#include "conn.h"
#include "conn_end.h"
#include "log.h"
#include "proxy_stage.h"
#include "spill.h"
#include "workers.h"
#include "sandbox.h"

#include <assert.h>
#include <errno.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
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
	OP_ACCEPT, /* multishot accept on a listener */
	OP_LISTEN, /* poll on a listener, under --max-conns */
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
#define BUFS_BYTES_MAX (4u << 20) /* per worker: what the ring may hold under load */
/*
 * The kernel takes provided buffers in ring order, so every buffer in the
 * ring gets touched in turn: a ring of all the buffers would keep all of
 * them resident (4 MiB) for a trickle of idle pings.  So the ring holds
 * only as many as the traffic needs (w->ring_target): it doubles while
 * receives keep waiting for buffers (RING_GROW_MS and more: a clump of
 * messages that a few batches serve does not grow it), and once a second
 * it shrinks to twice the most that were lent in that second, never below
 * RING_MIN.  The buffers
 * left out wait on a stack, the last returned on top; once a second those
 * below the top ring_target give their pages back (release_cold()).
 */
#define RING_MIN       16
#define RING_GROW_MS   20
#define RING_SHRINK_MS 1000
#define SCAN_MS	       50   /* timer granularity: idle, drain, grace, pauses, stuck sends */
#define EXIT_SLACK_MS  1000 /* after the grace: wait this long for cancels */
#define NOBUF	       (-1)
#define SUBMIT_TRIES   8  /* a full SQ whose submission keeps failing ends the worker */
#define ACCEPT_BATCH   64 /* accepts per readable listener, so reads are not starved */
#define HOT_TRIES      4  /* --busy-poll: direct reads of the hot connection per batch */
#define HOT_IDLE_MS    1  /* --busy-poll: silent this long, a connection is no longer hot */
#define NO_HOT	       UINT32_MAX

/* Where a connection table slot is in its life. */
enum uconn_life {
	UC_FREE,    /* on the free list */
	UC_OPEN,    /* serving */
	UC_BROKEN,  /* reset, or a send failed: closed at the next advance() */
	UC_CLOSING, /* cancels are in flight; freed when the last operation lands */
};

/*
 * One connection.  The bytes conn counts as unsent are exactly the ones the
 * engine holds for it, in echo order: first tx.len bytes of ring buffer
 * tx.bid (when not NOBUF; a send reads them, or is about to), then the
 * spill.  assert_bytes_held() checks it while the connection is open.
 *
 * 80 bytes, and all an idle connection holds (docs/engines.md, "Memory per
 * connection"): no buffer of its own (the ring's are lent per receive), a
 * spill record only while echo bytes wait, times as 32-bit milliseconds
 * (ms32(); every interval compared is far below 2^31 ms).
 */
struct uconn {
	struct conn c;
	struct conn_stats st; /* for its end line */
	struct spill *spill;  /* the rest of the echo, after tx.bid's bytes; NULL: none */
	union {
		int fd;		    /* while not UC_FREE */
		uint32_t next_free; /* UC_FREE: the free list */
	};
	union {
		uint32_t last_ms;	 /* last progress, for --idle-timeout */
		uint32_t drain_deadline; /* while draining, when no idle timeout applies */
	};
	struct {
		uint32_t gen : 24;   /* tells a stale completion from the current one */
		bool armed : 1;	     /* a receive is in flight */
		bool cancelling : 1; /* and a cancel for it too */
		bool starved : 1;    /* it ended with -ENOBUFS: waits for ring buffers */
		bool sized : 1;	     /* arm sized reads, not multishot (arm_recv()) */
		bool overshot : 1;   /* a multishot read went past cap: sized for good */
		uint32_t len;	     /* size of the read armed; 0: multishot */
	} rx;
	struct {
		int16_t bid;	     /* ring buffer whose bytes go first, else NOBUF */
		bool busy : 1;	     /* a send is in flight */
		bool cancelling : 1; /* it is stuck on a ring buffer and being cancelled */
		uint8_t batch;	     /* in which batch it started (low 8 bits: see advance()) */
		uint32_t len;	     /* how many */
		uint32_t sent_ms;    /* when the send from bid started */
	} tx;
	uint8_t life;  /* enum uconn_life */
	uint8_t end;   /* enum conn_end; UC_CLOSING: why */
	bool draining; /* drain_deadline applies */
};

/* Connection slots come in chunks that never move, so a growing table copies nothing. */
#define CONN_CHUNK 256

struct worker;

struct uring_shared {
	struct server *srv;
	int *wake_fds; /* one eventfd per worker */
	struct worker *ws;
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
	size_t bufs_bytes;    /* mapped at bufs */
	int br_add;	      /* buffers returned since the last advance */
	bool ran_dry;	      /* logged once, at debug level */
	uint32_t nfree;	      /* buffers the kernel may use */
	uint32_t ring_target; /* how many the ring should hold (see RING_MIN) */
	int16_t *spare;	      /* buffers out of the ring, the last returned on top */
	uint32_t nspare;
	uint8_t *released;    /* per buffer: its pages were given back (release_cold()) */
	uint32_t peak_lent;   /* most buffers lent to connections since shrink_at */
	uint64_t shrink_at;   /* when the ring may shrink next */
	uint64_t starved_at;  /* since when receives wait for buffers; 0: they do not */
	bool cold_pending;    /* a spare buffer may hold pages release_cold() would give back */
	uint32_t nring_sends; /* sends in flight from ring buffers */

	struct spill_pool spills; /* free private buffers for stalled echoes */

	struct uconn **chunks; /* nconns_cap / CONN_CHUNK of them */
	uint32_t nconns_cap, free_head, live, nstarved, ndraining, scan_from;

	bool *acc_armed;
	bool accept_by_poll; /* --max-conns: poll listeners, accept(2) per free slot */
	bool full;	     /* listeners unwatched: every --max-conns slot is taken */
	bool full_counted;   /* this pause is counted; a wake-up starts a new one */
	uint64_t pause_until;
	bool stopping;
	uint64_t now;	/* ms, read once per batch */
	uint64_t batch; /* batches run, to tell a send queued in this one */
	uint64_t grace_deadline, next_scan;
	int ring_err; /* the ring takes no more submissions: the worker stops */

	/* --busy-poll with a DEFER_TASKRUN ring: poll_hot() */
	unsigned char *hot_buf; /* what a direct read reads into; NULL: no direct reads */
	uint32_t hot;		/* the connection that last brought bytes, or NO_HOT */
	uint64_t hot_ms;	/* when it did */
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

/*
 * An SQE, submitting what is queued first if the ring is full.  NULL when
 * the ring takes no more (the error is kept in w->ring_err and ends the
 * worker): retrying a submission that fails for good would spin forever.
 * -EBUSY (the CQ overflowed) and -EAGAIN may pass once completions are
 * consumed, which run_batch() does one at a time, so they get a few tries.
 */
static struct io_uring_sqe *get_sqe(struct worker *w)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&w->ring);

	for (int tries = 0; !sqe && !w->ring_err; tries++) {
		int rc = io_uring_submit(&w->ring);

		sqe = io_uring_get_sqe(&w->ring);
		if (sqe)
			break;
		if (rc >= 0 || rc == -EINTR ||
		    ((rc == -EBUSY || rc == -EAGAIN) && tries < SUBMIT_TRIES))
			continue;
		w->ring_err = rc < 0 ? rc : -EBUSY;
		log_error("worker %d: io_uring_submit: %s", w->id, strerror(-w->ring_err));
	}
	return sqe;
}

static unsigned char *buf_at(struct worker *w, int32_t bid)
{
	return w->bufs + (size_t)bid * w->buf_bytes;
}

/* Puts buffer bid in the ring; visible to the kernel at the next flush_bufs(). */
static void provide(struct worker *w, int32_t bid)
{
	io_uring_buf_ring_add(w->br, buf_at(w, bid), w->buf_bytes, (unsigned short)bid,
			      io_uring_buf_ring_mask(w->nbufs), w->br_add++);
	w->nfree++;
	w->released[bid] = 0;
}

/* Buffer bid is free again: back to the ring if it is short of its target, else spare. */
static void recycle(struct worker *w, int32_t bid)
{
	if (w->nfree < w->ring_target) {
		provide(w, bid);
	} else {
		w->spare[w->nspare++] = (int16_t)bid;
		w->cold_pending = true;
	}
}

/* Gives back the pages of buffer bid (whole pages only), which stays out of the ring. */
static void release_pages(struct worker *w, int32_t bid)
{
	uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
	uintptr_t lo = ((uintptr_t)buf_at(w, bid) + page - 1) & ~(page - 1);
	uintptr_t hi = ((uintptr_t)buf_at(w, bid) + w->buf_bytes) & ~(page - 1);

	if (hi > lo && madvise((void *)lo, hi - lo, MADV_DONTNEED) == 0)
		w->released[bid] = 1;
}

/*
 * The spare buffers the ring will not take back soon (all but the top
 * ring_target of the stack) give their pages back, once each: what a burst
 * touched does not stay resident while idle.
 */
static void release_cold(struct worker *w)
{
	for (uint32_t i = 0; i + w->ring_target < w->nspare; i++)
		if (!w->released[w->spare[i]])
			release_pages(w, w->spare[i]);
	w->cold_pending = false;
}

/*
 * Sizes the ring to the traffic (see RING_MIN) and tops it up from the
 * spare stack.  Called once per batch, before the buffers are flushed.
 */
static void fit_ring(struct worker *w)
{
	uint32_t lent = w->nbufs - w->nfree - w->nspare;

	if (lent > w->peak_lent)
		w->peak_lent = lent;
	if (!w->nstarved)
		w->starved_at = 0;
	else if (!w->starved_at)
		w->starved_at = w->now;
	if (w->starved_at && w->now - w->starved_at >= RING_GROW_MS && w->ring_target < w->nbufs) {
		w->starved_at = w->now;
		w->ring_target = w->ring_target * 2 < w->nbufs ? w->ring_target * 2 : w->nbufs;
		w->shrink_at = w->now + RING_SHRINK_MS;
		w->peak_lent = lent;
	} else if (w->now >= w->shrink_at) {
		/* Twice the peak, so that the peak again does not grow it at once. */
		uint32_t want = RING_MIN;

		while (want < 2 * w->peak_lent && want < w->nbufs)
			want *= 2;
		if (want < w->ring_target)
			w->ring_target = want;
		release_cold(w);
		w->shrink_at = w->now + RING_SHRINK_MS;
		w->peak_lent = lent;
	}
	while (w->nfree < w->ring_target && w->nspare)
		provide(w, w->spare[--w->nspare]);
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
	w->ring_target = w->nbufs < RING_MIN ? w->nbufs : RING_MIN;
	w->spare = malloc(w->nbufs * sizeof(*w->spare));
	w->released = malloc(w->nbufs);
	if (!w->spare || !w->released)
		return -ENOMEM;
	memset(w->released, 1, w->nbufs); /* never touched: nothing to give back */
	/* Mapped, not malloc'ed: page-aligned, so release_pages() gives whole buffers back. */
	w->bufs_bytes = (size_t)w->nbufs * w->buf_bytes;
	w->bufs = mmap(NULL, w->bufs_bytes, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1,
		       0);
	if (w->bufs == MAP_FAILED) {
		w->bufs = NULL;
		return -ENOMEM;
	}
	w->br = map_buf_ring(&w->ring, w->nbufs, &w->br_bytes, &rc);
	if (!w->br)
		return rc;
	/* The first buffers on top of the spare stack: those are used first. */
	for (uint32_t i = w->nbufs; i-- > 0;)
		w->spare[w->nspare++] = (int16_t)i;
	fit_ring(w);
	flush_bufs(w);
	return 0;
}

static struct uconn *conn_at(struct worker *w, uint32_t idx)
{
	return &w->chunks[idx / CONN_CHUNK][idx % CONN_CHUNK];
}

/* A time in ms as a connection keeps it: the low 32 bits. */
static uint32_t ms32(uint64_t ms)
{
	return (uint32_t)ms;
}

/* True when 32-bit time now has reached deadline (wrap-safe within 2^31 ms). */
static bool ms32_reached(uint32_t now, uint32_t deadline)
{
	return (int32_t)(now - deadline) >= 0;
}

static size_t spilled(const struct uconn *u)
{
	return u->spill ? u->spill->len : 0;
}

/* The connection's spill record, made on first use; NULL if out of memory. */
static struct spill *spill_of(struct uconn *u)
{
	if (!u->spill)
		u->spill = calloc(1, sizeof(*u->spill));
	return u->spill;
}

/* Drops the spill record once it holds nothing: idle connections keep none. */
static void spill_release(struct uconn *u)
{
	if (u->spill && !u->spill->buf && !u->spill->retired) {
		free(u->spill);
		u->spill = NULL;
	}
}

/* A reset, or a send that failed: the connection closes at its next advance(). */
static void mark_broken(struct uconn *u)
{
	if (u->life == UC_OPEN)
		u->life = UC_BROKEN;
}

/*
 * Copies n bytes behind what waits for the echo (in_flight: a send reads
 * the spilled bytes now); out of memory, the connection cannot keep its
 * echo whole, so it closes.
 */
static void spill_or_break(struct worker *w, struct uconn *u, const unsigned char *data, size_t n,
			   bool in_flight)
{
	struct spill *sp = spill_of(u);

	if (!sp || spill_append(&w->spills, sp, data, n, in_flight) < 0)
		mark_broken(u);
}

/* The relation stated at struct uconn: conn's unsent count is what is held. */
static void assert_bytes_held(const struct uconn *u)
{
	assert(u->life != UC_OPEN ||
	       conn_unsent(&u->c) == (u->tx.bid != NOBUF ? u->tx.len : 0) + spilled(u));
	(void)u;
}

/*
 * Adds a chunk of free slots to the table.  Only the directory of chunks is
 * reallocated; a grown table wastes at most one chunk, never half of it.
 */
static bool add_chunk(struct worker *w)
{
	uint32_t n = w->nconns_cap / CONN_CHUNK;
	struct uconn **dir = realloc(w->chunks, (n + 1) * sizeof(*dir));
	struct uconn *chunk;

	if (!dir)
		return false;
	w->chunks = dir;
	chunk = calloc(CONN_CHUNK, sizeof(*chunk)); /* life: UC_FREE */
	if (!chunk)
		return false;
	dir[n] = chunk;
	for (uint32_t i = CONN_CHUNK; i-- > 0;) {
		chunk[i].next_free = w->free_head;
		w->free_head = w->nconns_cap + i;
	}
	w->nconns_cap += CONN_CHUNK;
	return true;
}

/* A free slot in the connection table, growing it; UINT32_MAX if out of memory. */
static uint32_t alloc_slot(struct worker *w)
{
	uint32_t idx;

	if (w->free_head == UINT32_MAX && !add_chunk(w))
		return UINT32_MAX;
	idx = w->free_head;
	w->free_head = conn_at(w, idx)->next_free;
	return idx;
}

/*
 * Arms a receive into the ring: one read sized by conn_borrowed_room(), or multishot.
 * A multishot receive cannot be told "enough": it overshoots the cap by
 * whatever the socket holds.  So a connection earns it by showing ping-pong
 * traffic (a sized read that drained the socket with no echo pending), uses
 * it only while nothing is pending, and loses it for good once it overshot.
 */
static void arm_recv(struct worker *w, uint32_t idx)
{
	struct uconn *u = conn_at(w, idx);
	struct io_uring_sqe *sqe = get_sqe(w);
	size_t room = conn_borrowed_room(&u->c);

	if (!sqe)
		return;
	u->rx.len = 0;
	if (proxy_stage_pending(u->st.proxy)) {
		unsigned char *p = proxy_stage_room(u->st.proxy, &room);

		u->rx.len = (uint32_t)room;
		io_uring_prep_recv(sqe, u->fd, p, room, 0); /* not the ring's: see on_header() */
	} else if (conn_unsent(&u->c) || u->rx.sized) {
		u->rx.len = (uint32_t)(room < w->buf_bytes ? room : w->buf_bytes);
		io_uring_prep_recv(sqe, u->fd, NULL, u->rx.len, 0);
	} else {
		io_uring_prep_recv_multishot(sqe, u->fd, NULL, 0, 0);
	}
	if (!proxy_stage_pending(u->st.proxy)) {
		sqe->flags |= IOSQE_BUFFER_SELECT;
		sqe->buf_group = BUF_GROUP;
	}
	u->rx.gen++;
	io_uring_sqe_set_data64(sqe, UD(OP_RECV, u->rx.gen, idx));
	u->rx.armed = true;
	u->rx.cancelling = false;
}

static void cancel(struct worker *w, uint64_t ud)
{
	struct io_uring_sqe *sqe = get_sqe(w);

	if (!sqe)
		return;
	io_uring_prep_cancel64(sqe, ud, 0);
	io_uring_sqe_set_data64(sqe, UD(OP_CANCEL, 0, 0));
}

static void cancel_recv(struct worker *w, uint32_t idx)
{
	struct uconn *u = conn_at(w, idx);

	if (u->rx.armed && !u->rx.cancelling) {
		cancel(w, UD(OP_RECV, u->rx.gen, idx));
		u->rx.cancelling = true;
	}
}

static bool prep_send(struct worker *w, uint32_t idx, const unsigned char *p, size_t n)
{
	struct io_uring_sqe *sqe = get_sqe(w);

	if (!sqe)
		return false;
	io_uring_prep_send(sqe, conn_at(w, idx)->fd, p, n, MSG_NOSIGNAL);
	io_uring_sqe_set_data64(sqe, UD(OP_SEND, 0, idx));
	conn_at(w, idx)->tx.busy = true;
	return true;
}

/* Sends what is next: the ring buffer just received, else the spill. */
static void send_next(struct worker *w, uint32_t idx)
{
	struct uconn *u = conn_at(w, idx);
	const unsigned char *p;
	size_t n;

	if (u->tx.busy)
		return;
	if (u->tx.bid != NOBUF) {
		if (!prep_send(w, idx, buf_at(w, u->tx.bid), u->tx.len))
			return;
		u->tx.sent_ms = ms32(w->now);
		u->tx.batch = (uint8_t)w->batch;
		w->nring_sends++;
	} else if (u->spill && (n = spill_next(u->spill, &p)) > 0) {
		prep_send(w, idx, p, n);
	}
}

/*
 * A send from a ring buffer that cannot finish soon: cancel it, so that the
 * buffer goes back to the ring; on_send() spills its bytes.
 */
static void unpin(struct worker *w, uint32_t idx)
{
	struct uconn *u = conn_at(w, idx);

	if (u->tx.busy && u->tx.bid != NOBUF && !u->tx.cancelling && u->life != UC_CLOSING) {
		cancel(w, UD(OP_SEND, 0, idx));
		u->tx.cancelling = true;
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
	if (!u->tx.busy && u->tx.bid == NOBUF && !spilled(u)) {
		u->tx.bid = (int16_t)bid;
		u->tx.len = len;
		return;
	}
	/* A send in flight that is not from the ring reads the spilled bytes. */
	spill_or_break(w, u, buf_at(w, bid), len, u->tx.busy && u->tx.bid == NOBUF);
	recycle(w, bid);
}

/* A send from the ring landed with n bytes gone: keep the rest, return the buffer. */
static void ring_sent(struct worker *w, struct uconn *u, size_t n)
{
	struct spill *sp;

	if (n < u->tx.len && u->life == UC_OPEN &&
	    (!(sp = spill_of(u)) ||
	     spill_prepend(&w->spills, sp, buf_at(w, u->tx.bid) + n, u->tx.len - n) < 0))
		mark_broken(u);
	recycle(w, u->tx.bid);
	u->tx.bid = NOBUF;
	w->nring_sends--;
}

/* Tells every worker that a --max-conns slot freed. */
static void wake_all(struct worker *w)
{
	uint64_t one = 1;

	for (int i = 0; i < w->srv->workers; i++)
		if (write(w->sh->wake_fds[i], &one, sizeof(one)) < 0)
			log_debug("wake: %s", strerror(errno));
}

/* Frees a --max-conns slot and tells the workers if the server was full. */
static void release_slot(struct worker *w)
{
	if (server_release_slot(w->srv))
		wake_all(w);
}

/* Frees the slot once no operation refers to it any more. */
static void maybe_free(struct worker *w, uint32_t idx)
{
	struct uconn *u = conn_at(w, idx);

	if (u->rx.armed || u->tx.busy)
		return;
	if (u->tx.bid != NOBUF) {
		recycle(w, u->tx.bid);
		u->tx.bid = NOBUF;
	}
	if (u->spill)
		spill_free(&w->spills, u->spill);
	spill_release(u);
	conn_ended(w->m, u->fd, &u->st, (enum conn_end)u->end);
	close(u->fd);
	if (w->hot == idx)
		w->hot = NO_HOT;
	if (u->rx.starved)
		w->nstarved--;
	if (u->draining)
		w->ndraining--;
	u->life = UC_FREE;
	u->next_free = w->free_head;
	w->free_head = idx;
	w->live--;
	release_slot(w);
}

/* Closes a connection: cancels what is in flight, frees the slot when it lands. */
static void start_close(struct worker *w, uint32_t idx, enum conn_end end)
{
	struct uconn *u = conn_at(w, idx);

	if (u->life == UC_CLOSING)
		return;
	u->life = UC_CLOSING;
	u->end = (uint8_t)end;
	cancel_recv(w, idx);
	if (u->tx.busy)
		cancel(w, UD(OP_SEND, 0, idx));
	maybe_free(w, idx);
}

/* Bytes moved: the idle timeout starts again (a draining connection has its deadline there). */
static void progress(struct worker *w, struct uconn *u)
{
	if (!u->draining)
		u->last_ms = ms32(w->now);
}

/* Shuts the write side when conn.c says the echo is complete. */
static void maybe_shutdown(struct worker *w, struct uconn *u)
{
	if (!conn_wants_shutdown(&u->c))
		return;
	shutdown(u->fd, SHUT_WR);
	conn_shutdown(&u->c);
	if (conn_draining(&u->c)) {
		u->drain_deadline = ms32(w->now + CONN_DRAIN_MS);
		u->draining = true;
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

	if (u->tx.busy && conn_borrowed_room(&u->c) < full / 2)
		u->rx.sized = true;
	else
		arm_recv(w, idx);
}

/* Does what the connection's state asks for next: send, shut, read, close. */
static void advance(struct worker *w, uint32_t idx)
{
	struct uconn *u = conn_at(w, idx);
	bool want;

	if (u->life == UC_CLOSING) {
		maybe_free(w, idx);
		return;
	}
	assert_bytes_held(u);
	if (u->life == UC_BROKEN) {
		start_close(w, idx, CONN_END_RESET);
		return;
	}
	send_next(w, idx);
	/*
	 * A send queued in this batch has not been tried yet: most complete at
	 * once (a bulk sender reaches backpressure at every full buffer), and
	 * one that does not is unpinned by scan() within 2 * SCAN_MS (which
	 * also catches a send 256 batches old that the 8 bits mistake for new).
	 */
	if (conn_backpressured(&u->c) && u->tx.batch != (uint8_t)w->batch)
		unpin(w, idx);
	maybe_shutdown(w, u);
	if (conn_done(&u->c)) {
		start_close(w, idx, conn_end_done(&u->c));
		return;
	}
	want = conn_wants_read(&u->c);
	if (!want)
		cancel_recv(w, idx);
	else if (!u->rx.armed && !u->rx.starved)
		arm_or_wait(w, idx);
}

static void starve(struct worker *w, struct uconn *u)
{
	if (!w->ran_dry) {
		w->ran_dry = true;
		log_debug("worker %d: buffer ring ran dry; reads wait for buffers", w->id);
	}
	if (!u->rx.starved) {
		u->rx.starved = true;
		w->nstarved++;
	}
}

/*
 * --proxy-protocol: a read into the header buffer landed (res bytes).  On
 * PROXY_OK the bytes after the header are spilled, as the ring's bytes are
 * when a send is in flight, and the next read goes to the ring.
 */
static void on_header(struct worker *w, uint32_t idx, int res)
{
	struct uconn *u = conn_at(w, idx);
	struct proxy_stage *ps = u->st.proxy;
	const uint8_t *data;
	enum proxy_result r;
	size_t n, keep;

	if (res < 0 || u->life != UC_OPEN) {
		if (res < 0 && res != -ECANCELED)
			mark_broken(u);
		advance(w, idx);
		return;
	}
	if (res > 0)
		conn_stats_in(&u->st, w->m, (size_t)res);
	r = proxy_stage_arrived(ps, (size_t)res);
	if (r != PROXY_OK && r != PROXY_NEED_MORE) {
		conn_stats_refused(&u->st, r);
		start_close(w, idx, conn_end_proxy(r));
		return;
	}
	if (r == PROXY_OK) {
		n = proxy_stage_data(ps, &data);
		keep = n ? conn_borrowed_arrived(&u->c, n) : 0;
		if (keep)
			spill_or_break(w, u, data, keep, false);
		proxy_stage_done(ps);
		progress(w, u);
	}
	advance(w, idx);
}

static void on_recv(struct worker *w, struct io_uring_cqe *cqe)
{
	uint32_t idx = UD_IDX(cqe->user_data);
	struct uconn *u = conn_at(w, idx);
	bool current = UD_GEN(cqe->user_data) == (u->rx.gen & 0xffffff);
	int32_t bid = NOBUF;

	if (current && !(cqe->flags & IORING_CQE_F_MORE))
		u->rx.armed = false;
	if (proxy_stage_pending(u->st.proxy)) {
		on_header(w, idx, cqe->res);
		return;
	}
	if (cqe->flags & IORING_CQE_F_BUFFER) {
		bid = (int32_t)(cqe->flags >> IORING_CQE_BUFFER_SHIFT);
		w->nfree--;
	}
	if (cqe->res > 0) {
		size_t keep;

		if (current && u->rx.len && !conn_unsent(&u->c) && (uint32_t)cqe->res < u->rx.len)
			u->rx.sized = u->rx.overshot;
		keep = conn_borrowed_arrived(&u->c, (size_t)cqe->res);

		if (keep && u->life != UC_CLOSING)
			take(w, u, bid, (uint32_t)keep);
		else
			recycle(w, bid);
		conn_stats_in(&u->st, w->m, (size_t)cqe->res);
		if (conn_unsent(&u->c) > u->c.cap)
			u->rx.sized = u->rx.overshot = true;
		progress(w, u);
		if (w->hot_buf && u->life == UC_OPEN) {
			w->hot = idx;
			w->hot_ms = w->now;
		}
	} else if (bid != NOBUF) {
		recycle(w, bid); /* a buffer with nothing in it */
	}
	if (cqe->res == 0) {
		conn_borrowed_arrived(&u->c, 0);
	} else if (cqe->res == -ENOBUFS) {
		starve(w, u);
	} else if (cqe->res < 0 && cqe->res != -ECANCELED) {
		mark_broken(u);
	}
	advance(w, idx);
}

static void on_send(struct worker *w, struct io_uring_cqe *cqe)
{
	uint32_t idx = UD_IDX(cqe->user_data);
	struct uconn *u = conn_at(w, idx);
	bool unpinned = u->tx.cancelling && (cqe->res == -ECANCELED || cqe->res == -EINTR);
	size_t n = cqe->res > 0 ? (size_t)cqe->res : 0;

	u->tx.busy = false;
	u->tx.cancelling = false;
	if (cqe->res < 0 && !unpinned)
		mark_broken(u);
	if (n) {
		conn_sent(&u->c, n);
		conn_stats_out(&u->st, w->m, n);
		progress(w, u);
	}
	if (u->tx.bid != NOBUF)
		ring_sent(w, u, n);
	else if (u->spill)
		spill_sent(&w->spills, u->spill, n);
	spill_release(u);
	advance(w, idx);
}

/* Starts serving an accepted socket, which holds a --max-conns slot. */
static void add_conn(struct worker *w, int fd)
{
	uint32_t idx = alloc_slot(w);
	struct uconn *u;
	int one = 1;

	struct proxy_stage *ps = NULL;

	if (idx != UINT32_MAX && w->srv->cfg->proxy_protocol) {
		ps = proxy_stage_new(w->now, (uint64_t)w->srv->cfg->proxy_timeout_ms);
		if (!ps) {
			conn_at(w, idx)->next_free = w->free_head;
			w->free_head = idx;
			idx = UINT32_MAX;
		}
	}
	if (idx == UINT32_MAX) {
		/* Shed load: this one connection is refused, the server goes on. */
		close(fd);
		release_slot(w);
		return;
	}
	/* As net_accept() does: an echo is written the moment it is read. */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	u = conn_at(w, idx);
	memset(u, 0, sizeof(*u));
	conn_init(&u->c, NULL, (size_t)w->srv->cfg->buffer_bytes, server_conn_flags(w->srv));
	u->fd = fd;
	u->life = UC_OPEN;
	u->tx.bid = NOBUF;
	u->rx.sized = true;
	u->last_ms = ms32(w->now);
	conn_stats_start(&u->st, fd, w->now);
	u->st.proxy = ps;
	w->live++;
	metrics_add(w->m, METRICS_ACCEPTED, 1);
	advance(w, idx);
}

/* The operation that waits on listener i: multishot accept, or a poll under --max-conns. */
static uint64_t accept_ud(const struct worker *w, int i)
{
	return UD(w->accept_by_poll ? OP_LISTEN : OP_ACCEPT, 0, i);
}

static void arm_accepts(struct worker *w)
{
	if (w->stopping || w->full || w->now < w->pause_until)
		return;
	for (int i = 0; i < w->srv->nlisteners; i++) {
		struct io_uring_sqe *sqe;
		int lfd = w->srv->listeners[i].fd;

		if (w->acc_armed[i] || w->srv->listeners[i].type != SOCK_STREAM ||
		    !listener_serves(&w->srv->listeners[i], w->id))
			continue;
		sqe = get_sqe(w);
		if (!sqe)
			return;
		if (w->accept_by_poll)
			io_uring_prep_poll_add(sqe, lfd, POLLIN);
		else
			io_uring_prep_multishot_accept(sqe, lfd, NULL, NULL, SOCK_CLOEXEC);
		io_uring_sqe_set_data64(sqe, accept_ud(w, i));
		w->acc_armed[i] = true;
	}
}

static void cancel_accepts(struct worker *w)
{
	for (int i = 0; i < w->srv->nlisteners; i++)
		if (w->acc_armed[i])
			cancel(w, accept_ud(w, i));
}

/* An accept failed: what net_accept_error_next() says, as every engine does. */
static void accept_failed(struct worker *w, uint32_t i, int err)
{
	if (err == -ECANCELED)
		return;
	if (err == -EINVAL && server_stop_requested(w->srv))
		return; /* the listener was shut for the stop (echod.c): not a fault */
	if (net_accept_error_next(err) != NET_ACCEPT_PAUSE)
		return; /* the accept is re-armed */
	metrics_add(w->m, METRICS_ACCEPT_PAUSES, 1);
	engine_log_accept_error(err);
	w->pause_until = w->now + ENGINE_ACCEPT_PAUSE_MS;
	if (w->acc_armed[i])
		cancel(w, accept_ud(w, i));
}

/* A multishot accept completed (no --max-conns: a slot is always free). */
static void on_accept(struct worker *w, struct io_uring_cqe *cqe)
{
	uint32_t i = UD_IDX(cqe->user_data);
	int fd = cqe->res;

	if (!(cqe->flags & IORING_CQE_F_MORE))
		w->acc_armed[i] = false;
	if (fd >= 0 && !w->stopping && server_take_slot(w->srv))
		add_conn(w, fd);
	else if (fd >= 0)
		close(fd);
	else
		accept_failed(w, i, fd);
	arm_accepts(w);
}

/*
 * Listener i is readable (--max-conns): accept while slots are free, the way
 * the other engines do, a slot taken before each accept(2).  Without one the
 * worker stops watching its listeners until a slot frees.
 */
static void on_listen(struct worker *w, struct io_uring_cqe *cqe)
{
	uint32_t i = UD_IDX(cqe->user_data);
	int lfd = w->srv->listeners[i].fd;

	w->acc_armed[i] = false;
	if (cqe->res < 0) {
		accept_failed(w, i, cqe->res);
	} else {
		for (int n = 0; n < ACCEPT_BATCH && !w->stopping; n++) {
			int fd, err;

			if (!server_take_slot(w->srv)) {
				/* scan() retries every SCAN_MS: count the pause once. */
				if (!w->full_counted)
					metrics_add(w->m, METRICS_MAXCONNS_PAUSES, 1);
				w->full_counted = true;
				w->full = true; /* until a wake-up, or the next scan */
				break;
			}
			/* A blocking socket, as multishot accept gives: io_uring waits on it. */
			fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
			if (fd >= 0) {
				add_conn(w, fd);
				continue;
			}
			err = -errno;
			release_slot(w);
			if (net_accept_error_next(err) != NET_ACCEPT_NEXT) {
				accept_failed(w, i, err);
				break;
			}
		}
	}
	arm_accepts(w);
}

static void arm_poll(struct worker *w, int fd, enum op op)
{
	struct io_uring_sqe *sqe = get_sqe(w);

	if (!sqe)
		return;
	io_uring_prep_poll_add(sqe, fd, POLLIN);
	io_uring_sqe_set_data64(sqe, UD(op, 0, 0));
}

/* Waits for a wake-up: a read of the (blocking) eventfd through the ring. */
static void arm_wake(struct worker *w)
{
	struct io_uring_sqe *sqe = get_sqe(w);

	if (!sqe)
		return;
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
	w->full_counted = false;
	if (w->full) {
		w->full = false;
		arm_accepts(w);
	}
}

static void on_stop(struct worker *w)
{
	w->stopping = true;
	w->grace_deadline = w->now + (uint64_t)w->srv->cfg->grace_ms;
	cancel_accepts(w);
}

static void handle(struct worker *w, struct io_uring_cqe *cqe)
{
	switch (UD_OP(cqe->user_data)) {
	case OP_ACCEPT:
		on_accept(w, cqe);
		break;
	case OP_LISTEN:
		on_listen(w, cqe);
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

/*
 * --busy-poll: whether connection u may be read directly now.  Only while
 * the ring's receive is armed and idle in the kernel, nothing of the echo
 * waits (no send in flight, no ring buffer held, no spill), and no
 * completion waits in the CQ: with IORING_SETUP_DEFER_TASKRUN the kernel
 * posts completions only inside this thread's io_uring_enter, so bytes read
 * here are the next ones of the stream, and the armed receive, run at the
 * next enter, finds the socket empty and waits again without a completion.
 */
static bool hot_readable(struct worker *w, const struct uconn *u)
{
	return u->life == UC_OPEN && u->rx.armed && !u->rx.cancelling && !u->tx.busy &&
	       u->tx.bid == NOBUF && !conn_unsent(&u->c) && conn_wants_read(&u->c) &&
	       !proxy_stage_pending(u->st.proxy) && io_uring_cq_ready(&w->ring) == 0;
}

/*
 * One direct read of connection idx and, if it found bytes, their echo by
 * send(2); what the socket does not take is spilled and leaves through the
 * ring (advance()).  EOF and errors are left to the armed receive, which
 * reports them at the next enter.  Returns true when bytes came.
 */
static bool hot_read(struct worker *w, uint32_t idx)
{
	struct uconn *u = conn_at(w, idx);
	size_t room = conn_borrowed_room(&u->c), keep;
	ssize_t n, sent;

	n = recv(u->fd, w->hot_buf, room < w->buf_bytes ? room : w->buf_bytes, MSG_DONTWAIT);
	if (n <= 0)
		return false;
	keep = conn_borrowed_arrived(&u->c, (size_t)n);
	conn_stats_in(&u->st, w->m, (size_t)n);
	progress(w, u);
	w->hot_ms = w->now;
	sent = keep ? send(u->fd, w->hot_buf, keep, MSG_DONTWAIT | MSG_NOSIGNAL) : 0;
	if (sent < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
		mark_broken(u);
	sent = sent > 0 ? sent : 0;
	if (sent) {
		conn_sent(&u->c, (size_t)sent);
		conn_stats_out(&u->st, w->m, (size_t)sent);
	}
	if ((size_t)sent < keep && u->life == UC_OPEN)
		spill_or_break(w, u, w->hot_buf + sent, keep - (size_t)sent, false);
	advance(w, idx);
	return true;
}

/*
 * --busy-poll, after a batch: reads the hot connection directly, up to
 * HOT_TRIES times, stopping at the first read that finds bytes; so the
 * other connections wait at most HOT_TRIES reads more for the next batch.
 * Not while its echo is in flight (hot_readable()); a connection stops
 * being hot when it closes or has been silent for HOT_IDLE_MS, and the
 * ring's next receive completion makes it hot again.  Returns true when
 * bytes came.
 */
static bool poll_hot(struct worker *w)
{
	if (w->hot == NO_HOT)
		return false;
	if (conn_at(w, w->hot)->life != UC_OPEN || w->now - w->hot_ms > HOT_IDLE_MS) {
		w->hot = NO_HOT;
		return false;
	}
	for (int i = 0; i < HOT_TRIES && hot_readable(w, conn_at(w, w->hot)); i++)
		if (hot_read(w, w->hot))
			return true;
	return false;
}

/* Re-arms receives of starved connections while buffers are free, fairly. */
static void starve_rearm(struct worker *w)
{
	uint32_t budget = w->nfree, n = w->nconns_cap;

	for (uint32_t k = 0; k < n && w->nstarved && budget; k++) {
		uint32_t idx = (w->scan_from + k) % n;
		struct uconn *u = conn_at(w, idx);

		if (u->life == UC_FREE || !u->rx.starved)
			continue;
		u->rx.starved = false;
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

		if (u->life == UC_FREE || u->life == UC_CLOSING)
			continue;
		if (proxy_stage_pending(u->st.proxy)) {
			/* Only the header's deadline applies until it is complete. */
			if (now >= u->st.proxy->deadline) {
				conn_stats_refused(&u->st, PROXY_ERR_TIMEOUT);
				start_close(w, idx, CONN_END_PROXY_TIMEOUT);
			} else if (grace_over) {
				start_close(w, idx, CONN_END_GRACE);
			}
		} else if (idle_ms && !u->draining && ms32(now) - u->last_ms >= (uint32_t)idle_ms) {
			start_close(w, idx, CONN_END_IDLE);
		} else if (u->draining && ms32_reached(ms32(now), u->drain_deadline)) {
			start_close(w, idx, conn_end_done(&u->c)); /* the echo was delivered */
		} else if (grace_over) {
			start_close(w, idx, CONN_END_GRACE);
		} else if (u->tx.bid != NOBUF && ms32(now) - u->tx.sent_ms >= SCAN_MS) {
			unpin(w, idx); /* the peer does not read: free the ring buffer */
		}
	}
	if (w->nstarved)
		starve_rearm(w);
	if (w->pause_until && now >= w->pause_until)
		w->pause_until = 0;
	w->full = false; /* in case a wake-up was missed: a poll finds out */
	arm_accepts(w);	 /* and after a pause */
}

static bool needs_timer(const struct worker *w)
{
	return ((w->srv->cfg->idle_timeout_ms || w->srv->cfg->proxy_protocol) && w->live) ||
	       w->ndraining || w->stopping || w->nstarved || w->pause_until || w->full ||
	       w->nring_sends || w->ring_target > RING_MIN || w->cold_pending; /* fit_ring() */
}

/*
 * Takes the next completion off the ring.  Consumed before it is handled, so
 * that what handling it submits finds room for its completions.
 */
static bool next_cqe(struct worker *w, struct io_uring_cqe *out)
{
	struct io_uring_cqe *cqe;
	unsigned head;

	io_uring_for_each_cqe(&w->ring, head, cqe)
	{
		*out = *cqe;
		io_uring_cq_advance(&w->ring, 1);
		return true;
	}
	return false;
}

/*
 * Submits everything queued and makes the completions visible: waits for
 * one (up to SCAN_MS when a timer is due), or, with --busy-poll, not at
 * all.  Enters the kernel even with nothing to submit, because with
 * IORING_SETUP_DEFER_TASKRUN completions are posted only then.
 */
static int submit_and_collect(struct worker *w)
{
	struct __kernel_timespec ts = {.tv_nsec = SCAN_MS * 1000000L};
	struct io_uring_cqe *cqe;

	if (w->srv->cfg->busy_poll)
		return io_uring_submit_and_get_events(&w->ring);
	return io_uring_submit_and_wait_timeout(&w->ring, &cqe, 1, needs_timer(w) ? &ts : NULL,
						NULL);
}

/* One batch: submit everything queued, wait for completions, handle them all. */
static int run_batch(struct worker *w)
{
	struct io_uring_cqe c;
	bool any = false;
	int rc;

	flush_bufs(w);
	rc = submit_and_collect(w);
	/*
	 * -EBUSY: the CQ overflowed, so nothing was submitted; consuming the
	 * completions below is the remedy, and the next batch submits.
	 */
	if (rc < 0 && rc != -ETIME && rc != -EINTR && rc != -EBUSY)
		return rc;
	w->now = clock_now_ms();
	w->batch++;
	while (next_cqe(w, &c)) {
		handle(w, &c);
		any = true;
	}
	if (w->hot_buf && poll_hot(w))
		any = true;
	if (!any && w->srv->cfg->busy_poll)
		cpu_relax();
	if (w->ring_err)
		return w->ring_err;
	fit_ring(w);
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
	if (w->ring_err)
		return w->ring_err;
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
		if (conn_at(w, i)->life != UC_FREE)
			close(conn_at(w, i)->fd);
	if (w->br)
		io_uring_unregister_buf_ring(&w->ring, BUF_GROUP);
	io_uring_queue_exit(&w->ring);
	if (quiet) {
		if (w->br)
			munmap(w->br, w->br_bytes);
		if (w->bufs)
			munmap(w->bufs, w->bufs_bytes);
	}
	free(w->spare);
	free(w->released);
	free(w->hot_buf);
	spill_pool_drain(&w->spills);
	for (uint32_t i = 0; i < w->nconns_cap / CONN_CHUNK; i++)
		free(w->chunks[i]);
	free(w->chunks);
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
	w->hot = NO_HOT;
	spill_pool_init(&w->spills, (size_t)w->srv->cfg->buffer_bytes);
	w->acc_armed = calloc((size_t)w->srv->nlisteners, sizeof(*w->acc_armed));
	w->accept_by_poll = w->srv->cfg->max_conns > 0;
	rc = w->acc_armed ? setup_bufs(w) : -ENOMEM;
	/* poll_hot()'s reads need completions posted in this thread's enter only. */
	if (rc == 0 && w->srv->cfg->busy_poll && (w->ring.flags & IORING_SETUP_DEFER_TASKRUN))
		w->hot_buf = malloc(w->buf_bytes); /* without it the worker only spins */
	if (rc < 0)
		log_error("worker %d: buffer ring: %s", w->id, strerror(-rc));
	else if ((rc = sandbox_ring_start(&w->ring, w->srv->cfg)) < 0)
		log_error("worker %d: ring restrictions: %s", w->id, strerror(-rc));
	if (rc < 0)
		worker_free(w);
	return rc;
}

static int setup(void *ctx, int index)
{
	return worker_setup(&((struct uring_shared *)ctx)->ws[index]);
}

/* Every ring is up and restricted: no more rings, before anyone serves. */
static int all_set_up(void *ctx)
{
	return sandbox_forbid_new_rings(((struct uring_shared *)ctx)->srv->cfg);
}

static int serve(void *ctx, int index)
{
	return loop(&((struct uring_shared *)ctx)->ws[index]);
}

static void finish(void *ctx, int index)
{
	worker_free(&((struct uring_shared *)ctx)->ws[index]);
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

/* The wake-up eventfds outlive every worker: any may write to another's. */
static int run(struct server *srv)
{
	int n = srv->workers, rc;
	struct uring_shared sh = {.srv = srv,
				  .wake_fds = calloc((size_t)n, sizeof(int)),
				  .ws = calloc((size_t)n, sizeof(struct worker))};
	struct worker_ops ops = {.ctx = &sh,
				 .setup = setup,
				 .all_set_up = all_set_up,
				 .serve = serve,
				 .finish = finish,
				 .pin = srv->pin,
				 .batch = srv->batch};

	rc = sh.wake_fds && sh.ws ? 0 : -ENOMEM;
	for (int i = 0; sh.wake_fds && i < n; i++)
		sh.wake_fds[i] = -1;
	if (rc == 0)
		rc = open_wake_fds(&sh, n);
	for (int i = 0; rc == 0 && i < n; i++)
		sh.ws[i] = (struct worker){.srv = srv,
					   .sh = &sh,
					   .m = &srv->metrics.w[i],
					   .id = i,
					   .wake_fd = sh.wake_fds[i]};
	if (rc == 0)
		rc = workers_run(&ops, n);
	for (int i = 0; sh.wake_fds && i < n; i++)
		if (sh.wake_fds[i] >= 0)
			close(sh.wake_fds[i]);
	free(sh.wake_fds);
	free(sh.ws);
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
