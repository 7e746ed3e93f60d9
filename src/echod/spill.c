/*
 * spill.c - private echo buffers in echo order, and their pool.
 */
#include "spill.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void spill_pool_init(struct spill_pool *p, size_t unit)
{
	memset(p, 0, sizeof(*p));
	p->unit = unit;
}

void spill_pool_drain(struct spill_pool *p)
{
	while (p->n)
		free(p->free[--p->n].buf);
	p->bytes = 0;
}

/* A buffer of at least n bytes, from the pool if one fits, in whole units. */
static unsigned char *pool_get(struct spill_pool *p, size_t n, size_t *cap)
{
	unsigned char *buf;

	for (int i = p->n - 1; i >= 0; i--) {
		if (p->free[i].cap < n)
			continue;
		buf = p->free[i].buf;
		*cap = p->free[i].cap;
		p->bytes -= *cap;
		p->free[i] = p->free[--p->n];
		return buf;
	}
	*cap = n <= p->unit ? p->unit : (n + p->unit - 1) / p->unit * p->unit;
	return malloc(*cap);
}

/* Keeps a free buffer for reuse within the pool's bounds, else frees it. */
static void pool_put(struct spill_pool *p, unsigned char *buf, size_t cap)
{
	if (buf && p->n < SPILL_POOL_MAX && p->bytes + cap <= SPILL_POOL_MAX * p->unit) {
		p->free[p->n].buf = buf;
		p->free[p->n].cap = cap;
		p->n++;
		p->bytes += cap;
	} else {
		free(buf);
	}
}

/*
 * Makes room for more bytes after the waiting ones.  Bytes a send in flight
 * reads must not move: then they are copied to a new buffer and the old one
 * retires until the send lands.
 */
static int make_room(struct spill_pool *p, struct spill *s, size_t more, bool in_flight)
{
	size_t need = s->len + more, cap;
	unsigned char *buf;

	/* A send reading a retired buffer no longer pins the current one. */
	in_flight = in_flight && !s->retired;
	if (s->buf && s->off + need <= s->cap)
		return 0;
	if (s->buf && need <= s->cap && !in_flight) {
		memmove(s->buf, s->buf + s->off, s->len);
		s->off = 0;
		return 0;
	}
	buf = pool_get(p, need, &cap);
	if (!buf)
		return -ENOMEM;
	if (s->len)
		memcpy(buf, s->buf + s->off, s->len);
	if (in_flight)
		s->retired = s->buf; /* freed, not pooled, when the send lands */
	else
		pool_put(p, s->buf, s->cap);
	s->buf = buf;
	s->cap = cap;
	s->off = 0;
	return 0;
}

int spill_append(struct spill_pool *p, struct spill *s, const unsigned char *data, size_t n,
		 bool in_flight)
{
	int rc = make_room(p, s, n, in_flight);

	if (rc == 0) {
		memcpy(s->buf + s->off + s->len, data, n);
		s->len += n;
	}
	return rc;
}

int spill_prepend(struct spill_pool *p, struct spill *s, const unsigned char *data, size_t n)
{
	int rc = make_room(p, s, n, false);

	if (rc < 0)
		return rc;
	if (s->off < n) {
		memmove(s->buf + n, s->buf + s->off, s->len);
		s->off = n;
	}
	s->off -= n;
	s->len += n;
	memcpy(s->buf + s->off, data, n);
	return 0;
}

size_t spill_next(struct spill *s, const unsigned char **p)
{
	if (s->len && s->off) {
		memmove(s->buf, s->buf + s->off, s->len);
		s->off = 0;
	}
	*p = s->buf;
	return s->len;
}

void spill_sent(struct spill_pool *p, struct spill *s, size_t n)
{
	free(s->retired);
	s->retired = NULL;
	s->off += n;
	s->len -= n;
	if (!s->len)
		spill_free(p, s);
}

void spill_free(struct spill_pool *p, struct spill *s)
{
	pool_put(p, s->buf, s->cap);
	free(s->retired);
	memset(s, 0, sizeof(*s));
}
