/*
 * fuzz_conn.c - the echo protocol (conn) driven by arbitrary event sequences
 * and checked against a model of its documented rules.
 *
 * The fuzzer plays an engine that keeps conn.h's contract (it reads only
 * where and when conn says, sends only what is pending, shuts the write side
 * when told) while the events themselves arrive in any order and any size:
 * bytes arrive, a send takes some of the pending bytes, the peer's EOF, the
 * engine shuts the write side, lends its buffer back, or polls conn's state
 * to set its interest, as engine_epoll.c does after every event.
 *
 * The input: two header bytes, then two bytes per event.
 *   byte 0, low nibble of byte 1   buffer size - 1 (1 to 4096 bytes)
 *   bit 4 of byte 1                once mode (CONN_ONCE)
 *   bits 5-7 of byte 1 (mod 3)     owned buffer (threads, iterative), lent
 *                                  buffer (epoll: attach/detach), borrowed
 *                                  buffers (uring: conn only counts)
 *   each event: an operation, and an amount (255: as much as allowed)
 *
 * After every event the model and conn must agree on every predicate, the
 * pending count and the room; conn never holds more than the buffer size
 * (borrowed: unless the engine's receive overshot), and is never stuck (it
 * wants input, has bytes to echo, wants the write side shut, or is done).
 * Every byte echoed is the next one of the peer's stream.  At the end the
 * engine flushes, shuts and delivers the peer's EOF as conn asks: conn must
 * then be done, with every byte it accepted echoed.
 */
#include "conn.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#include "fuzz_check.h"

#define ALL	     255 /* an amount meaning "everything allowed" */
#define FINISH_STEPS 16	 /* flush, shut, EOF: a few rounds are enough */

enum buffer_mode { OWNED, LENT, BORROWED, MODES };

enum event {
	EV_READ,   /* bytes arrive (owned: where conn_read_buf says; borrowed: sized by
		      conn_borrowed_room) */
	EV_EOF,	   /* a read returns 0: the peer's EOF */
	EV_SEND,   /* a send takes some pending bytes */
	EV_SHUT,   /* the engine follows conn_wants_shutdown */
	EV_DETACH, /* lent: the engine takes its buffer back if conn lets it */
	EV_POLL,   /* the engine asks what to wait for (wants_read, pending) */
	EV_LATE,   /* borrowed: a multishot receive delivers more than conn_borrowed_room */
	EVENTS
};

/* What conn.h promises, kept independently of struct conn. */
struct model {
	size_t cap;
	bool once;
	enum buffer_mode mode;
	uint64_t fed;	 /* stream bytes conn accepted to echo */
	uint64_t echoed; /* stream bytes sent back */
	bool peer_eof, got_chunk, write_shut;
	bool overshoot; /* borrowed: a receive went past cap, which conn keeps */
};

struct rig {
	struct conn c;
	struct model m;
	unsigned char *bufs[2]; /* the engine's pool: lent in turn */
	unsigned char *cur;	/* the buffer conn holds, NULL if none */
	int next;
};

/* The byte at offset i of the peer's stream: no short period, so reordering shows. */
static unsigned char stream_byte(uint64_t i)
{
	uint64_t x = (i + 1) * 0x9e3779b97f4a7c15ull;

	return (unsigned char)((x >> 32) ^ (x >> 56));
}

static size_t m_pending(const struct model *m)
{
	return (size_t)(m->fed - m->echoed);
}

/* Input is wanted until the peer's EOF, except once mode's after its chunk (until draining). */
static bool m_wants_input(const struct model *m)
{
	return !m->peer_eof && (m->write_shut || !(m->once && m->got_chunk));
}

static bool m_wants_read(const struct model *m)
{
	return m_wants_input(m) && (m->write_shut || m_pending(m) < m->cap);
}

static bool m_backpressured(const struct model *m)
{
	return m_wants_input(m) && !m->write_shut && m_pending(m) >= m->cap;
}

static bool m_wants_shutdown(const struct model *m)
{
	return !m->write_shut && m_pending(m) == 0 && (m->peer_eof || (m->once && m->got_chunk));
}

static size_t m_room(const struct model *m)
{
	if (!m_wants_input(m))
		return 0;
	if (m->write_shut)
		return m->cap; /* scratch space for draining */
	return m_pending(m) < m->cap ? m->cap - m_pending(m) : 0;
}

static void check_state(struct rig *r)
{
	const struct model *m = &r->m;
	const struct conn *c = &r->c;
	size_t pending = conn_unsent(c);

	CHECK(pending == m_pending(m));
	CHECK(conn_wants_read(c) == m_wants_read(m));
	CHECK(conn_backpressured(c) == m_backpressured(m));
	CHECK(conn_wants_shutdown(c) == m_wants_shutdown(m));
	CHECK(conn_draining(c) == (m->write_shut && !m->peer_eof));
	CHECK(conn_done(c) == (m->write_shut && m->peer_eof));
	CHECK(conn_borrowed_room(c) == m_room(m));
	/* The bound: at most cap bytes held (borrowed: unless a receive overshot). */
	CHECK(pending <= m->cap || (m->mode == BORROWED && m->overshoot));
	/* Once mode echoes one chunk of at most cap bytes, and nothing else. */
	CHECK(!m->once || m->fed <= m->cap);
	/* A lent buffer stays with conn while it holds bytes to echo. */
	CHECK(m->mode != LENT || r->cur || pending == 0);
	/* Never stuck: there is always something to wait for, or it is over. */
	CHECK(conn_wants_read(c) || pending > 0 || conn_wants_shutdown(c) || conn_done(c));
}

static size_t amount_of(unsigned amount, size_t max)
{
	return amount == ALL ? max : 1 + amount % max;
}

/* n bytes (0: EOF) arrived where conn said; the model takes them the documented way. */
static void model_received(struct model *m, size_t n)
{
	if (n == 0)
		m->peer_eof = true;
	else if (!m->write_shut) { /* drained input is discarded */
		m->fed += n;
		m->got_chunk |= m->once;
	}
}

/* Owned and lent buffers: the engine reads into the room conn_read_buf gives. */
static void owned_read(struct rig *r, unsigned amount, bool eof)
{
	const unsigned char *q;
	unsigned char *p = NULL;
	size_t room, n, pending;

	if (!conn_wants_read(&r->c)) {
		if (r->cur)
			CHECK(conn_read_buf(&r->c, &p) == 0);
		return;
	}
	if (!r->cur) { /* lent: borrow a buffer from the pool first */
		r->cur = r->bufs[r->next];
		r->next ^= 1;
		conn_lend(&r->c, r->cur);
	}
	room = conn_read_buf(&r->c, &p);
	CHECK(room > 0 && room <= m_room(&r->m));
	CHECK(p >= r->cur && p + room <= r->cur + r->m.cap);
	pending = conn_send_buf(&r->c, &q);
	if (!r->m.write_shut && pending) /* the read must not land on bytes still to echo */
		CHECK(p + room <= q || q + pending <= p);
	n = eof ? 0 : amount_of(amount, room);
	for (size_t i = 0; i < n; i++)
		p[i] = r->m.write_shut ? 0xEE : stream_byte(r->m.fed + i);
	conn_read_done(&r->c, n);
	model_received(&r->m, n);
}

/* Borrowed buffers: n bytes arrived in a buffer the engine holds. */
static void borrowed_receive(struct rig *r, size_t n)
{
	struct model *m = &r->m;
	size_t want = 0, keep;

	if (n && m_wants_input(m) && !m->write_shut)
		want = m->once && n > m->cap ? m->cap : n; /* once: the chunk is what fits */
	keep = conn_borrowed_arrived(&r->c, n);
	CHECK(keep == want);
	if (n == 0)
		m->peer_eof = true;
	m->fed += keep;
	m->got_chunk |= m->once && keep > 0;
	m->overshoot |= m_pending(m) > m->cap;
}

static void borrowed_read(struct rig *r, unsigned amount, bool eof, bool late)
{
	size_t room = conn_borrowed_room(&r->c);

	if (r->m.peer_eof)
		return; /* nothing arrives after the peer's EOF */
	if (eof)
		borrowed_receive(r, 0);
	else if (late) /* armed while conn wanted input, delivered past what it asked for */
		borrowed_receive(r, 1 + (size_t)amount * 17);
	else if (room) /* a single receive sized by conn_borrowed_room */
		borrowed_receive(r, amount_of(amount, room));
}

static void do_send(struct rig *r, unsigned amount)
{
	size_t pending = conn_unsent(&r->c), n;
	const unsigned char *q;

	if (pending == 0)
		return;
	n = amount == ALL ? pending : amount < pending ? amount : pending;
	if (r->m.mode != BORROWED) {
		CHECK(conn_send_buf(&r->c, &q) == pending);
		CHECK(q >= r->cur && q + pending <= r->cur + r->m.cap);
		for (size_t i = 0; i < n; i++)
			CHECK(q[i] == stream_byte(r->m.echoed + i));
	}
	conn_sent(&r->c, n);
	r->m.echoed += n;
}

static void do_shut(struct rig *r)
{
	if (!conn_wants_shutdown(&r->c))
		return;
	conn_shutdown(&r->c);
	r->m.write_shut = true;
}

/* engine_epoll.c's advance(): the buffer goes back to the pool whenever conn lets it. */
static void do_detach(struct rig *r)
{
	unsigned char *got = conn_reclaim(&r->c);

	if (!r->cur || m_pending(&r->m)) {
		CHECK(got == NULL);
		return;
	}
	CHECK(got == r->cur);
	memset(got, 0xA5, r->m.cap); /* another connection scribbles on it */
	r->cur = NULL;
}

/* engine_epoll.c's update_interest(): asked after every event, with or without a buffer. */
static void do_poll(struct rig *r)
{
	const unsigned char *q;

	(void)conn_wants_read(&r->c);
	CHECK(conn_send_buf(&r->c, &q) == m_pending(&r->m));
}

static void do_event(struct rig *r, enum event ev, unsigned amount)
{
	bool borrowed = r->m.mode == BORROWED;

	switch (ev) {
	case EV_READ:
	case EV_EOF:
	case EV_LATE:
		if (borrowed)
			borrowed_read(r, amount, ev == EV_EOF, ev == EV_LATE);
		else if (ev != EV_LATE)
			owned_read(r, amount, ev == EV_EOF);
		break;
	case EV_SEND:
		do_send(r, amount);
		break;
	case EV_SHUT:
		do_shut(r);
		break;
	case EV_DETACH:
		if (r->m.mode == LENT)
			do_detach(r);
		break;
	case EV_POLL:
		if (!borrowed)
			do_poll(r);
		break;
	case EVENTS:
		break;
	}
}

/* The end of the connection as an engine plays it: flush, shut, read the EOF. */
static void finish(struct rig *r)
{
	for (int i = 0; i < FINISH_STEPS && !conn_done(&r->c); i++) {
		do_send(r, ALL);
		do_shut(r);
		if (r->m.mode == BORROWED)
			borrowed_read(r, 0, true, false);
		else if (conn_wants_read(&r->c))
			owned_read(r, 0, true);
		check_state(r);
	}
	CHECK(conn_done(&r->c));
	CHECK(r->m.echoed == r->m.fed); /* nothing accepted was lost */
	if (r->m.mode == LENT) {
		do_detach(r);
		CHECK(r->cur == NULL);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct rig r;

	if (size < 2)
		return 0;
	memset(&r, 0, sizeof(r));
	r.m.cap = 1 + (data[0] | (size_t)(data[1] & 0x0f) << 8);
	r.m.once = data[1] & 0x10;
	r.m.mode = (enum buffer_mode)((data[1] >> 5) % MODES);
	/* Exactly cap bytes each, so AddressSanitizer sees any access past the buffer. */
	r.bufs[0] = malloc(r.m.cap);
	r.bufs[1] = malloc(r.m.cap);
	CHECK(r.bufs[0] && r.bufs[1]);
	if (r.m.mode == OWNED)
		r.cur = r.bufs[0];
	conn_init(&r.c, r.cur, r.m.cap, r.m.once ? CONN_ONCE : 0);
	check_state(&r);
	for (size_t i = 2; i + 1 < size; i += 2) {
		do_event(&r, (enum event)(data[i] % EVENTS), data[i + 1]);
		check_state(&r);
	}
	finish(&r);
	free(r.bufs[0]);
	free(r.bufs[1]);
	return 0;
}
