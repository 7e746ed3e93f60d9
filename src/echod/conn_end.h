/*
 * conn_end.h - how a connection ended, said once for every engine.
 *
 * Every engine reports the end of each stream connection through
 * conn_ended(), which counts it under its reason (metrics.h) and, with -v,
 * writes the one line per connection the log has: client address (the
 * PROXY header's when there was one), bytes and messages each way, duration
 * and how it ended.  Nothing is logged per message.
 *
 * The per-connection figures are plain fields the owning thread adds to;
 * they cost an add each, like the worker's counters.  Only -v reads them, so
 * only -v keeps them (struct conn_log): without it a connection's stats are
 * two NULL pointers, 16 bytes of what every idle connection holds.
 */
#ifndef ECHOD_CONN_END_H
#define ECHOD_CONN_END_H

#include "conn.h"
#include "metrics.h"
#include "proxy.h"

#include <stdint.h>

/* How a connection ended: one vocabulary for the counters and the log line. */
enum conn_end {
	CONN_END_EOF,		/* the peer ended the stream and got all its echo */
	CONN_END_RESET,		/* reset, broken pipe, or a local failure (out of memory) */
	CONN_END_IDLE,		/* --idle-timeout */
	CONN_END_GRACE,		/* still open when --grace ran out after a stop */
	CONN_END_ONCE,		/* --once: the one echo delivered */
	CONN_END_PROXY_MISSING, /* --proxy-protocol refusals, proxy.h's reasons */
	CONN_END_PROXY_MALFORMED,
	CONN_END_PROXY_OVERSIZED,
	CONN_END_PROXY_UNSUPPORTED,
	CONN_END_PROXY_TIMEOUT,
	CONN_END_PROXY_TRUNCATED,
	CONN_ENDS
};

struct proxy_stage;

/* -v only: a connection's figures for its end line. */
struct conn_log {
	uint64_t start_ms;
	unsigned long bytes_in, bytes_out, msgs_in, msgs_out;
	/* The real peer, formatted at the accept, since getpeername(2) fails
	 * once both sides have shut the connection. */
	char peer[];
};

/* What a connection keeps for its end. */
struct conn_stats {
	struct conn_log *log; /* -v only (else NULL, also when out of memory) */
	/* --proxy-protocol only (else NULL): the header phase, then its address;
	 * a refusal's detail is its err. */
	struct proxy_stage *proxy;
};

/* "eof", "reset", "idle-timeout", "grace", "once", "proxy-missing", ... */
const char *conn_end_name(enum conn_end end);
/* The end of a connection that conn.c says is done: eof, or once. */
enum conn_end conn_end_done(const struct conn *c);
/* The end that refuses a connection for a PROXY header result. */
enum conn_end conn_end_proxy(enum proxy_result r);

/* Starts the figures of the connection on fd, accepted at now_ms. */
void conn_stats_start(struct conn_stats *st, int fd, uint64_t now_ms);

static inline void conn_stats_in(struct conn_stats *st, struct metrics_worker *m, size_t n)
{
	if (st->log) {
		st->log->bytes_in += n;
		st->log->msgs_in++;
	}
	metrics_add(m, METRICS_BYTES_IN, n);
	metrics_add(m, METRICS_MSGS_IN, 1);
}

static inline void conn_stats_out(struct conn_stats *st, struct metrics_worker *m, size_t n)
{
	if (st->log) {
		st->log->bytes_out += n;
		st->log->msgs_out++;
	}
	metrics_add(m, METRICS_BYTES_OUT, n);
	metrics_add(m, METRICS_MSGS_OUT, 1);
}

/* A --proxy-protocol header was refused (st->proxy is set): r says why, for the log. */
void conn_stats_refused(struct conn_stats *st, enum proxy_result r);

/*
 * The connection on fd (still open) ended: counts it, writes its -v line,
 * and frees st->log and st->proxy.  Call it once per accepted connection, before close.
 */
void conn_ended(struct metrics_worker *m, int fd, struct conn_stats *st, enum conn_end end);

#endif
