/*
 * metrics.h - counters every engine updates cheaply.
 *
 * Each worker owns one cache-line-aligned block and adds to it with relaxed
 * atomics (uncontended, so as cheap as a plain add); readers sum the blocks.
 */
#ifndef ECHOD_METRICS_H
#define ECHOD_METRICS_H

#include <stdatomic.h>

enum metrics_counter {
	METRICS_ACCEPTED,
	METRICS_CLOSED,
	METRICS_BYTES_IN,
	METRICS_BYTES_OUT,
	METRICS_CONN_ERRORS,   /* resets, broken pipes */
	METRICS_IDLE_TIMEOUTS, /* closed by --idle-timeout */
	METRICS_ACCEPT_PAUSES, /* out of descriptors or memory on accept */

	/* How connections ended, one counter per reason; METRICS_CLOSED counts
	 * them all, METRICS_CONN_ERRORS (reset) and METRICS_IDLE_TIMEOUTS above
	 * are two of the reasons. */
	METRICS_CLOSED_EOF,   /* the peer ended the stream and got all its echo */
	METRICS_CLOSED_GRACE, /* still open when --grace ran out after a stop */
	METRICS_CLOSED_ONCE,  /* --once: the one echo delivered */
	METRICS_MSGS_IN,      /* reads that returned data */
	METRICS_MSGS_OUT,     /* sends that moved data */
	METRICS_MAXCONNS_PAUSES, /* accepting paused: --max-conns reached */

	/* --proxy-protocol: connections closed for a bad or missing header, by
	 * reason (proxy.h's labels). */
	METRICS_PROXY_MISSING,
	METRICS_PROXY_MALFORMED,
	METRICS_PROXY_OVERSIZED,
	METRICS_PROXY_UNSUPPORTED,
	METRICS_PROXY_TIMEOUT,
	METRICS_PROXY_TRUNCATED,

	/* UDP echo (udp.c). */
	METRICS_UDP_ECHOED,	 /* datagrams answered */
	METRICS_UDP_TRUNCATED,	 /* too long for the buffer: dropped, never echoed in part */
	METRICS_UDP_GUARD_DROPS, /* refused by the loop and reflection guard */
	METRICS_UDP_RATE_DROPS,	 /* over --udp-rate for their source */
	METRICS_UDP_SEND_ERRORS, /* replies the kernel refused or had no room for */
	METRICS_NCOUNTERS,
};

struct metrics_worker {
	_Alignas(64) atomic_ulong v[METRICS_NCOUNTERS];
};

struct metrics {
	int nworkers;
	struct metrics_worker *w;
};

/* Returns 0 or -ENOMEM. */
int metrics_init(struct metrics *m, int nworkers);
void metrics_free(struct metrics *m);

static inline void metrics_add(struct metrics_worker *w, enum metrics_counter c, unsigned long n)
{
	atomic_fetch_add_explicit(&w->v[c], n, memory_order_relaxed);
}

/* The sum over every worker. */
unsigned long metrics_sum(const struct metrics *m, enum metrics_counter c);
const char *metrics_name(enum metrics_counter c);

#endif
