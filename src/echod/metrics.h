/*
 * metrics.h - counters every engine updates cheaply.
 *
 * Each worker owns one cache-line-aligned block and adds to it with relaxed
 * atomics (uncontended, so as cheap as a plain add); readers sum the blocks.
 */
#ifndef ECHOD_METRICS_H
#define ECHOD_METRICS_H

#include <stdatomic.h>
#include <stddef.h>

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
	METRICS_CLOSED_EOF,	 /* the peer ended the stream and got all its echo */
	METRICS_CLOSED_GRACE,	 /* still open when --grace ran out after a stop */
	METRICS_CLOSED_ONCE,	 /* --once: the one echo delivered */
	METRICS_MSGS_IN,	 /* reads that returned data */
	METRICS_MSGS_OUT,	 /* sends that moved data */
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
/* The name of the counter's family, "echod_bytes_sent_total" (several
 * counters share a family, told apart by a reason label). */
const char *metrics_name(enum metrics_counter c);

/*
 * The exposition (Prometheus text format 0.0.4).  Every counter of the enum
 * is one row of metrics.c's table: its family (name, HELP, TYPE) and the
 * value of the family's label, if it has one.
 */

/* What the process reports about itself; a field < 0 is left out. */
struct metrics_process {
	double cpu_seconds; /* user + system */
	double resident_bytes;
	double virtual_bytes;
	double open_fds;
	double max_fds;
	double start_time; /* seconds since the epoch */
};

/* Everything one scrape shows, gathered first so the text is a pure function of it. */
struct metrics_snapshot {
	unsigned long counters[METRICS_NCOUNTERS];
	long active; /* connections being served */
	const char *version;
	const char *engine;
	struct metrics_process process;
};

/* Sums every counter over the workers into s->counters. */
void metrics_snapshot_counters(const struct metrics *m, struct metrics_snapshot *s);

/*
 * Writes the exposition of s into buf (NUL-terminated).  Returns its length,
 * or -1 when cap is too small (METRICS_TEXT_MAX always suffices).
 */
#define METRICS_TEXT_MAX 16384
int metrics_render(const struct metrics_snapshot *s, char *buf, size_t cap);

#endif
