/*
 * conn.c - the echo protocol as a state machine over one buffer.
 *
 * The buffer is linear: bytes arrive at tail and leave from head.  When
 * everything is echoed both go back to 0, which in the usual ping-pong
 * pattern happens after every message, so the buffer never needs to wrap.
 * When unsent bytes sit at the front of a full buffer they are moved down
 * (one memmove per refill at most) before reading more.
 */
#include "conn.h"

#include <assert.h>
#include <string.h>

void conn_init(struct conn *c, unsigned char *buf, size_t cap, unsigned flags)
{
	assert(cap > 0);
	memset(c, 0, sizeof(*c));
	c->buf = buf;
	assert(cap <= UINT32_MAX && flags <= UINT8_MAX);
	c->cap = (uint32_t)cap;
	c->flags = (uint8_t)flags;
}

static bool wants_input(const struct conn *c)
{
	if (c->peer_eof)
		return false;
	if (c->write_shut)
		return true; /* draining */
	return !((c->flags & CONN_ONCE) && c->got_chunk);
}

void conn_lend(struct conn *c, unsigned char *buf)
{
	assert(!c->buf && buf);
	c->buf = buf;
}

unsigned char *conn_reclaim(struct conn *c)
{
	unsigned char *buf = c->buf;

	if (c->tail != c->head)
		return NULL;
	c->buf = NULL;
	return buf;
}

bool conn_wants_read(const struct conn *c)
{
	/* Room after moving unsent bytes down, or below the borrowed cap. */
	return wants_input(c) && (c->write_shut || c->tail - c->head < c->cap);
}

bool conn_backpressured(const struct conn *c)
{
	return wants_input(c) && !c->write_shut && c->tail - c->head >= c->cap;
}

size_t conn_read_buf(struct conn *c, unsigned char **p)
{
	if (!wants_input(c))
		return 0;
	assert(c->buf);
	if (c->write_shut) {
		*p = c->buf;
		return c->cap;
	}
	if (c->tail == c->cap && c->head > 0) {
		memmove(c->buf, c->buf + c->head, c->tail - c->head);
		c->tail -= c->head;
		c->head = 0;
	}
	*p = c->buf + c->tail;
	return c->cap - c->tail;
}

void conn_read_done(struct conn *c, size_t n)
{
	if (n == 0) {
		c->peer_eof = true;
		return;
	}
	if (c->write_shut)
		return; /* drained input is discarded */
	assert(n <= c->cap - c->tail);
	c->tail += (uint32_t)n;
	if (c->flags & CONN_ONCE)
		c->got_chunk = true;
}

size_t conn_borrowed_arrived(struct conn *c, size_t n)
{
	size_t keep = n;

	assert(!c->buf);
	if (n == 0)
		c->peer_eof = true;
	if (n == 0 || c->write_shut || !wants_input(c))
		return 0;
	/*
	 * The kernel read before we could say "enough": in once mode the
	 * chunk is what fits the buffer and the rest goes the way of drained
	 * input; in stream mode everything is echoed, and the overshoot past
	 * cap is what the engine's receive took before it could be stopped.
	 */
	if ((c->flags & CONN_ONCE) && keep > c->cap)
		keep = c->cap;
	assert(keep <= UINT32_MAX - c->tail);
	c->tail += (uint32_t)keep;
	if (c->flags & CONN_ONCE)
		c->got_chunk = true;
	return keep;
}

size_t conn_borrowed_room(const struct conn *c)
{
	size_t pending = c->tail - c->head;

	if (!wants_input(c))
		return 0;
	if (c->write_shut)
		return c->cap;
	return pending < c->cap ? c->cap - pending : 0;
}

size_t conn_unsent(const struct conn *c)
{
	return c->tail - c->head;
}

size_t conn_send_buf(const struct conn *c, const unsigned char **p)
{
	/* A lent buffer may be away (conn_reclaim): NULL + 0 is undefined in C. */
	*p = c->buf ? c->buf + c->head : NULL;
	return c->tail - c->head;
}

void conn_sent(struct conn *c, size_t n)
{
	assert(n <= c->tail - c->head);
	c->head += (uint32_t)n;
	if (c->head == c->tail)
		c->head = c->tail = 0;
}

bool conn_wants_shutdown(const struct conn *c)
{
	if (c->write_shut || c->tail != c->head)
		return false;
	return c->peer_eof || ((c->flags & CONN_ONCE) && c->got_chunk);
}

void conn_shutdown(struct conn *c)
{
	c->write_shut = true;
	c->head = c->tail = 0;
}

bool conn_draining(const struct conn *c)
{
	return c->write_shut && !c->peer_eof;
}

bool conn_done(const struct conn *c)
{
	return c->write_shut && c->peer_eof;
}
