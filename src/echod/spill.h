/*
 * spill.h - a connection's private copy of echo bytes that could not be sent
 * straight from where they were received, and a pool of such buffers.
 *
 * The uring engine receives into a ring of buffers that all its connections
 * share; a connection whose echo cannot leave at once must give its ring
 * buffer back, so its bytes spill here.  The bytes are kept in echo order;
 * a send in flight may be reading them, and then they must not move
 * (spill_append() is told so): they are copied to a new buffer and the old
 * one is retired until that send lands.
 *
 * Buffers come in multiples of a unit (--buffer bytes) so that one grown
 * for a large overshoot can be reused too; the pool keeps at most
 * SPILL_POOL_MAX free buffers and SPILL_POOL_MAX units of bytes.
 */
#ifndef ECHOD_SPILL_H
#define ECHOD_SPILL_H

#include <stdbool.h>
#include <stddef.h>

#define SPILL_POOL_MAX 64

struct spill_pool {
	struct {
		unsigned char *buf;
		size_t cap;
	} free[SPILL_POOL_MAX];
	int n;
	size_t bytes; /* the free buffers' capacity, bounded by SPILL_POOL_MAX units */
	size_t unit;
};

/* The bytes waiting, at buf + off; retired: an old buf a send in flight still reads. */
struct spill {
	unsigned char *buf, *retired;
	size_t cap, off, len;
};

void spill_pool_init(struct spill_pool *p, size_t unit);
/* Frees every buffer the pool keeps. */
void spill_pool_drain(struct spill_pool *p);

/*
 * Appends n bytes after the ones waiting.  in_flight: a send is reading the
 * waiting bytes from s->buf, so they must stay where they are.  Returns 0
 * or -ENOMEM (then s is unchanged).
 */
int spill_append(struct spill_pool *p, struct spill *s, const unsigned char *data, size_t n,
		 bool in_flight);
/* Puts n bytes before the ones waiting; no send may be reading them.  0 or -ENOMEM. */
int spill_prepend(struct spill_pool *p, struct spill *s, const unsigned char *data, size_t n);
/*
 * The bytes to send next, all of them, moved to the start of the buffer
 * first (no send may be reading them) so that bytes arriving during the
 * send rarely need a new buffer.  Returns their count; 0 when none wait.
 */
size_t spill_next(struct spill *s, const unsigned char **p);
/*
 * The send of the waiting bytes landed, n of them gone: the retired buffer
 * is freed, and an empty spill gives its buffer back to the pool.
 */
void spill_sent(struct spill_pool *p, struct spill *s, size_t n);
/* Gives everything back: the connection is gone. */
void spill_free(struct spill_pool *p, struct spill *s);

#endif
