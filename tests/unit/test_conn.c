/*
 * test_conn.c - the echo protocol (conn) driven as a pure state machine.
 *
 * Each test plays the part of an engine: it asks conn where to read, puts
 * bytes there as if read(2) had, asks what to echo, takes some of it as if
 * write(2) had, and checks what a peer would notice: the bytes echoed, in
 * order, when reading stops (backpressure, once mode) and when the write side
 * is shut and the connection may close.
 *
 * Most cases are scripts in one table, each a list of steps with the state
 * expected in between; the randomized test checks byte order against a model
 * over long runs of reads and sends of random sizes.
 */
#include "conn.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#define ROWS(tab) (sizeof(tab) / sizeof((tab)[0]))

/* What conn's predicates say, as one bit set, so a step can expect all at once. */
enum state_bits {
	READ = 1 << 0,	   /* conn_wants_read */
	SHUTDOWN = 1 << 1, /* conn_wants_shutdown */
	DRAINING = 1 << 2, /* conn_draining */
	DONE = 1 << 3,	   /* conn_done */
};

enum op {
	OP_END,	    /* end of the script */
	OP_RECV,    /* s arrives (all of it must fit where conn_read_buf points) */
	OP_EOF,	    /* the peer shuts its write side */
	OP_SEND,    /* the first strlen(s) pending bytes, which must be s, are sent */
	OP_PENDING, /* exactly s is waiting to be echoed */
	OP_ROOM,    /* conn_read_buf offers exactly n bytes */
	OP_STATE,   /* the predicates are exactly n (enum state_bits) */
	OP_SHUT,    /* the engine shuts the write side */
	OP_ATTACH,  /* the engine lends the buffer */
	OP_DETACH,  /* the engine takes the buffer back: n = 1 if it must succeed */
};

struct step {
	enum op op;
	const char *s;
	size_t n;
};

struct script {
	const char *name;
	size_t cap;
	unsigned flags;
	bool lent; /* starts without a buffer (ATTACH lends it) */
	struct step steps[24];
};

/* clang-format off */
#define RECV(x)		{.op = OP_RECV, .s = (x)}
#define SEND(x)		{.op = OP_SEND, .s = (x)}
#define PENDING(x)	{.op = OP_PENDING, .s = (x)}
#define ROOM(x)		{.op = OP_ROOM, .n = (x)}
#define STATE(x)	{.op = OP_STATE, .n = (x)}
#define DETACH(x)	{.op = OP_DETACH, .n = (x)}
#define PEER_EOF	{.op = OP_EOF}
#define SHUT		{.op = OP_SHUT}
#define ATTACH		{.op = OP_ATTACH}
#define END		{.op = OP_END}

static const struct script scripts[] = {
	{"stream: idle connection wants to read into the whole buffer", 16, 0, false, {
		STATE(READ), ROOM(16), PENDING(""), END}},
	{"stream: echo comes back in order across reads", 16, 0, false, {
		RECV("abc"), RECV("def"), STATE(READ), PENDING("abcdef"),
		SEND("abcdef"), PENDING(""), END}},
	{"partial write: one byte at a time", 16, 0, false, {
		RECV("hello"), SEND("h"), PENDING("ello"), SEND("e"), SEND("l"),
		SEND("l"), PENDING("o"), STATE(READ), SEND("o"), PENDING(""),
		ROOM(16), END}},
	{"partial write: more input arrives behind an unsent tail", 16, 0, false, {
		RECV("abcd"), SEND("ab"), ROOM(12), RECV("ef"), PENDING("cdef"),
		SEND("cde"), RECV("g"), PENDING("fg"), SEND("fg"), ROOM(16), END}},
	{"partial write: all but the last byte, then it", 4, 0, false, {
		RECV("wxyz"), SEND("wxy"), PENDING("z"), SEND("z"), ROOM(4), END}},
	{"eof with nothing pending: shut down, then done", 16, 0, false, {
		PEER_EOF, STATE(SHUTDOWN), ROOM(0), SHUT, STATE(DONE),
		END}},
	{"eof with pending bytes: flush, then shut down, then done", 16, 0, false, {
		RECV("hello"), PEER_EOF, STATE(0), ROOM(0), SEND("he"),
		STATE(0), PENDING("llo"), SEND("llo"), STATE(SHUTDOWN), SHUT,
		STATE(DONE), END}},
	{"eof on a full buffer: still flushes everything", 4, 0, false, {
		RECV("abcd"), PEER_EOF, STATE(0), SEND("a"), STATE(0),
		ROOM(0), SEND("bcd"), STATE(SHUTDOWN), SHUT, STATE(DONE),
		END}},
	{"backpressure: a full buffer stops reading until bytes leave", 8, 0, false, {
		RECV("abcd"), RECV("efgh"), ROOM(0), STATE(0),
		PENDING("abcdefgh"), SEND("a"), STATE(READ), ROOM(1),
		PENDING("bcdefgh"), RECV("i"), ROOM(0), PENDING("bcdefghi"), END}},
	{"backpressure: compaction keeps the unsent bytes in order", 8, 0, false, {
		RECV("abcdefgh"), SEND("abc"), ROOM(3), PENDING("defgh"),
		RECV("ijk"), PENDING("defghijk"), ROOM(0), SEND("defghij"),
		ROOM(7), RECV("lmn"), PENDING("klmn"), END}},
	{"backpressure: no compaction while there is room at the end", 8, 0, false, {
		RECV("abcd"), SEND("ab"), ROOM(4), PENDING("cd"), END}},
	{"backpressure: one-byte buffer", 1, 0, false, {
		RECV("x"), STATE(0), ROOM(0), SEND("x"), STATE(READ),
		RECV("y"), PENDING("y"), END}},
	{"once: one chunk, then no more reading", 16, CONN_ONCE, false, {
		RECV("hello"), STATE(0), ROOM(0), PENDING("hello"), END}},
	{"once: shut down only after the chunk is flushed", 16, CONN_ONCE, false, {
		RECV("hello"), SEND("hel"), STATE(0), SEND("lo"),
		STATE(SHUTDOWN), SHUT, STATE(READ | DRAINING), END}},
	{"once: draining discards input, done after the peer's eof", 8, CONN_ONCE, false, {
		RECV("hi"), SEND("hi"), SHUT, ROOM(8), RECV("trailing"),
		PENDING(""), RECV("more"), PENDING(""), STATE(READ | DRAINING),
		PEER_EOF, STATE(DONE), ROOM(0), END}},
	{"once: eof before any data shuts down at once", 16, CONN_ONCE, false, {
		PEER_EOF, STATE(SHUTDOWN), SHUT, STATE(DONE), END}},
	{"once: eof with the echo pending needs no drain", 16, CONN_ONCE, false, {
		RECV("hi"), PEER_EOF, STATE(0), SEND("hi"), STATE(SHUTDOWN),
		SHUT, STATE(DONE), END}},
	{"once: a chunk that fills the buffer", 4, CONN_ONCE, false, {
		RECV("abcd"), STATE(0), SEND("abcd"), STATE(SHUTDOWN), END}},
	{"lent buffer: attach, echo, detach refused while bytes are unsent", 8, 0, true, {
		ATTACH, RECV("abc"), DETACH(0), PENDING("abc"), SEND("ab"),
		DETACH(0), SEND("c"), DETACH(1), STATE(READ), ATTACH,
		ROOM(8), RECV("def"), PENDING("def"), END}},
	{"lent buffer: once mode gives it back, then borrows it to drain", 8, CONN_ONCE, true, {
		ATTACH, RECV("hi"), SEND("hi"), DETACH(1), STATE(SHUTDOWN),
		SHUT, ATTACH, RECV("junk"), PENDING(""), PEER_EOF, DETACH(1),
		STATE(DONE), END}},
};
/* clang-format on */

static unsigned state_of(const struct conn *c)
{
	return (conn_wants_read(c) ? READ : 0) | (conn_wants_shutdown(c) ? SHUTDOWN : 0) |
	       (conn_draining(c) ? DRAINING : 0) | (conn_done(c) ? DONE : 0);
}

static void check_pending(const struct conn *c, const char *want, size_t i)
{
	const unsigned char *p;
	size_t n = conn_send_buf(c, &p);

	if (n != strlen(want) || (n && memcmp(p, want, n)))
		fail_msg("step %zu: pending \"%.*s\", want \"%s\"", i, (int)n,
			 n ? (const char *)p : "", want);
}

static void do_recv(struct conn *c, const char *s, size_t i)
{
	unsigned char *p = NULL;
	size_t room = conn_read_buf(c, &p), n = strlen(s);

	if (room < n)
		fail_msg("step %zu: room for %zu bytes, want at least %zu", i, room, n);
	memcpy(p, s, n);
	conn_read_done(c, n);
}

static void do_send(struct conn *c, const char *s, size_t i)
{
	const unsigned char *p;
	size_t n = conn_send_buf(c, &p), want = strlen(s);

	if (n < want || memcmp(p, s, want))
		fail_msg("step %zu: pending \"%.*s\", want it to start with \"%s\"", i, (int)n,
			 (const char *)p, s);
	conn_sent(c, want);
}

static void check_room(struct conn *c, const unsigned char *buf, size_t want, size_t i)
{
	unsigned char *p = NULL;
	size_t room = conn_read_buf(c, &p);

	if (room != want)
		fail_msg("step %zu: room %zu, want %zu", i, room, want);
	/* The room always ends at the end of the buffer: reads never overrun it. */
	if (room && p + room != buf + c->cap)
		fail_msg("step %zu: room [%td, %td) is not the buffer's tail", i, p - buf,
			 p + room - buf);
	assert_int_equal(conn_wants_read(c), room > 0);
}

static void run_script(void **state)
{
	const struct script *sc = *state;
	unsigned char buf[64];
	struct conn c;

	assert_true(sc->cap <= sizeof(buf));
	memset(buf, '#', sizeof(buf));
	conn_init(&c, sc->lent ? NULL : buf, sc->cap, sc->flags);
	for (size_t i = 0; sc->steps[i].op != OP_END; i++) {
		const struct step *st = &sc->steps[i];

		switch (st->op) {
		case OP_RECV:
			do_recv(&c, st->s, i);
			break;
		case OP_EOF:
			conn_read_done(&c, 0);
			break;
		case OP_SEND:
			do_send(&c, st->s, i);
			break;
		case OP_PENDING:
			check_pending(&c, st->s, i);
			break;
		case OP_ROOM:
			check_room(&c, buf, st->n, i);
			break;
		case OP_STATE:
			if (state_of(&c) != st->n)
				fail_msg("step %zu: state %#x, want %#zx", i, state_of(&c), st->n);
			break;
		case OP_SHUT:
			conn_shutdown(&c);
			break;
		case OP_ATTACH:
			conn_lend(&c, buf);
			break;
		case OP_DETACH:
			assert_ptr_equal(conn_reclaim(&c), st->n ? buf : NULL);
			break;
		case OP_END:
			break;
		}
	}
}

/*
 * The randomized test: a peer streams bytes whose value depends on their
 * position, the engine reads and sends random amounts, and every byte echoed
 * must be the next one the model expects.
 */
struct random_case {
	const char *name;
	uint64_t seed;
	size_t cap;
	unsigned read_pct; /* chance of a read rather than a send: high fills the buffer */
	unsigned steps;
};

static const struct random_case random_cases[] = {
	{"random: 1-byte buffer", 1, 1, 50, 20000},
	{"random: 7-byte buffer, reader ahead", 2, 7, 70, 50000},
	{"random: 64-byte buffer, sender ahead", 3, 64, 30, 50000},
	{"random: 4096-byte buffer, reader ahead", 4, 4096, 75, 50000},
	{"random: 16384-byte buffer, balanced", 5, 16384, 50, 50000},
};

static uint64_t next_rand(uint64_t *s)
{
	/* xorshift64*: plenty for choosing sizes, and reproducible. */
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 2685821657736338717ull;
}

/* The byte at offset i of the peer's stream: no short period, so reordering shows. */
static unsigned char stream_byte(uint64_t i)
{
	uint64_t x = i * 0x9e3779b97f4a7c15ull;

	return (unsigned char)((x >> 32) ^ (x >> 56));
}

/* A random size in [1, max], often max itself (a read that fills the room). */
static size_t random_size(uint64_t *rng, size_t max)
{
	uint64_t r = next_rand(rng);

	return r % 4 == 0 ? max : 1 + (size_t)((r >> 8) % max);
}

struct model {
	uint64_t fed;	  /* bytes the peer sent that conn accepted */
	uint64_t echoed;  /* bytes conn handed out and the engine sent */
	unsigned full;	  /* reads refused because the buffer was full */
	unsigned compact; /* reads that moved unsent bytes down to make room */
};

static void random_read(struct conn *c, struct model *m, uint64_t *rng)
{
	const unsigned char *before, *after;
	unsigned char *p;
	size_t room, n;

	conn_send_buf(c, &before);
	room = conn_read_buf(c, &p);
	assert_int_equal(conn_wants_read(c), room > 0);
	if (room == 0) {
		m->full++;
		assert_int_equal(m->fed - m->echoed, c->cap);
		return;
	}
	conn_send_buf(c, &after);
	if (after != before && m->fed > m->echoed)
		m->compact++; /* unsent bytes were moved down to make this room */
	n = random_size(rng, room);
	for (size_t i = 0; i < n; i++)
		p[i] = stream_byte(m->fed + i);
	conn_read_done(c, n);
	m->fed += n;
}

static void random_send(struct conn *c, struct model *m, uint64_t *rng)
{
	const unsigned char *p;
	size_t pending = conn_send_buf(c, &p), n;

	assert_int_equal(pending, m->fed - m->echoed);
	assert_true(pending <= c->cap);
	if (pending == 0)
		return;
	n = random_size(rng, pending);
	for (size_t i = 0; i < n; i++)
		if (p[i] != stream_byte(m->echoed + i))
			fail_msg("byte %llu echoed as %#x, want %#x",
				 (unsigned long long)(m->echoed + i), p[i],
				 stream_byte(m->echoed + i));
	conn_sent(c, n);
	m->echoed += n;
}

static void run_random(void **state)
{
	const struct random_case *rc = *state;
	unsigned char *buf = test_malloc(rc->cap);
	struct model m = {0};
	uint64_t rng = rc->seed;
	struct conn c;

	conn_init(&c, buf, rc->cap, 0);
	for (unsigned i = 0; i < rc->steps; i++) {
		if (next_rand(&rng) % 100 < rc->read_pct)
			random_read(&c, &m, &rng);
		else
			random_send(&c, &m, &rng);
		assert_false(conn_wants_shutdown(&c));
	}
	/* The peer's EOF: everything still pending comes out, then the close. */
	conn_read_done(&c, 0);
	while (m.echoed < m.fed) {
		assert_int_equal(state_of(&c), 0);
		random_send(&c, &m, &rng);
	}
	assert_int_equal(state_of(&c), SHUTDOWN);
	conn_shutdown(&c);
	assert_int_equal(state_of(&c), DONE);
	/* The run must have exercised what it is meant to test. */
	assert_true(m.fed > rc->steps / 4);
	if (rc->read_pct > 50)
		assert_true(m.full > 0);
	if (rc->cap > 1)
		assert_true(m.compact > 0);
	test_free(buf);
}

/*
 * Borrowed buffers (the io_uring engine): the engine holds the bytes, conn
 * only counts them and decides.  Each step: feed n bytes (B_RECV, expecting
 * how many to keep), take n sent (B_SENT) or shut the write side (B_SHUT),
 * then the predicates expected.
 */
enum borrowed_op { B_RECV, B_SENT, B_SHUT, B_END };

struct borrowed_step {
	enum borrowed_op op;
	size_t n, keep;
	unsigned state; /* READ | SHUTDOWN | ... as for the scripts */
	size_t pending;
	bool backpressured; /* conn_backpressured */
};

/* conn_borrowed_room: cap minus what is pending, 0 past cap or without input wanted, cap while
 * draining. */
static size_t room_of(const struct conn *c, unsigned state)
{
	size_t pending = conn_unsent(c);

	if (!(state & READ))
		return 0;
	if (state & DRAINING)
		return c->cap;
	return c->cap - pending;
}

struct borrowed_case {
	const char *name;
	size_t cap;
	unsigned flags;
	struct borrowed_step steps[8];
};

static const struct borrowed_case borrowed_cases[] = {
	{"borrowed stream: overshoot kept, reading stops at cap, EOF then shut",
	 8,
	 0,
	 {{B_RECV, 5, 5, READ, 5, false},
	  {B_RECV, 6, 6, 0, 11, true},
	  {B_SENT, 11, 0, READ, 0, false},
	  {B_RECV, 0, 0, SHUTDOWN, 0, false},
	  {B_SHUT, 0, 0, DONE, 0, false},
	  {B_END, 0, 0, 0, 0, false}}},
	{"borrowed once: the chunk is cut at cap, later input discarded, then drained",
	 4,
	 CONN_ONCE,
	 {{B_RECV, 10, 4, 0, 4, false},
	  {B_RECV, 3, 0, 0, 4, false},
	  {B_SENT, 4, 0, SHUTDOWN, 0, false},
	  {B_SHUT, 0, 0, READ | DRAINING, 0, false},
	  {B_RECV, 5, 0, READ | DRAINING, 0, false},
	  {B_RECV, 0, 0, DONE, 0, false},
	  {B_END, 0, 0, 0, 0, false}}},
	{"borrowed stream: backpressure at exactly cap, lifted by a partial send",
	 8,
	 0,
	 {{B_RECV, 8, 8, 0, 8, true},
	  {B_SENT, 1, 0, READ, 7, false},
	  {B_RECV, 1, 1, 0, 8, true},
	  {B_RECV, 0, 0, 0, 8, false},
	  {B_SENT, 8, 0, SHUTDOWN, 0, false},
	  {B_END, 0, 0, 0, 0, false}}},
	{"borrowed once: a chunk of cap bytes is not backpressure, nor is draining",
	 4,
	 CONN_ONCE,
	 {{B_RECV, 4, 4, 0, 4, false},
	  {B_SENT, 4, 0, SHUTDOWN, 0, false},
	  {B_SHUT, 0, 0, READ | DRAINING, 0, false},
	  {B_RECV, 9, 0, READ | DRAINING, 0, false},
	  {B_END, 0, 0, 0, 0, false}}},
};

static void run_borrowed(void **state)
{
	const struct borrowed_case *bc = *state;
	struct conn c;

	conn_init(&c, NULL, bc->cap, bc->flags);
	for (size_t i = 0; bc->steps[i].op != B_END; i++) {
		const struct borrowed_step *st = &bc->steps[i];

		if (st->op == B_RECV)
			assert_int_equal(conn_borrowed_arrived(&c, st->n), st->keep);
		else if (st->op == B_SENT)
			conn_sent(&c, st->n);
		else
			conn_shutdown(&c);
		assert_int_equal(state_of(&c), st->state);
		assert_int_equal(conn_unsent(&c), st->pending);
		assert_int_equal(conn_backpressured(&c), st->backpressured);
		assert_int_equal(conn_borrowed_room(&c), room_of(&c, st->state));
	}
}

static struct CMUnitTest borrowed_tests[ROWS(borrowed_cases)];
static struct CMUnitTest script_tests[ROWS(scripts)];
static struct CMUnitTest random_tests[ROWS(random_cases)];

int main(void)
{
	int failed = 0;

	for (size_t i = 0; i < ROWS(scripts); i++)
		script_tests[i] = (struct CMUnitTest){scripts[i].name, run_script, NULL, NULL,
						      (void *)&scripts[i]};
	for (size_t i = 0; i < ROWS(random_cases); i++)
		random_tests[i] = (struct CMUnitTest){random_cases[i].name, run_random, NULL, NULL,
						      (void *)&random_cases[i]};
	failed += cmocka_run_group_tests_name("conn scripts", script_tests, NULL, NULL);
	failed += cmocka_run_group_tests_name("conn random", random_tests, NULL, NULL);
	for (size_t i = 0; i < ROWS(borrowed_cases); i++)
		borrowed_tests[i] = (struct CMUnitTest){borrowed_cases[i].name, run_borrowed, NULL,
							NULL, (void *)&borrowed_cases[i]};
	failed += cmocka_run_group_tests_name("conn borrowed", borrowed_tests, NULL, NULL);
	return failed ? 1 : 0;
}
