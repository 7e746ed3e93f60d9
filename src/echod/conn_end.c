/*
 * conn_end.c - counting and logging the end of every stream connection.
 */
#include "conn_end.h"

#include "clock.h"
#include "log.h"
#include "net.h"
#include "proxy_stage.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

/* At most one line this often about refused PROXY headers without -v. */
#define PROXY_WARN_EVERY_MS 60000

static const char *const end_names[CONN_ENDS] = {
	[CONN_END_EOF] = "eof",
	[CONN_END_RESET] = "reset",
	[CONN_END_IDLE] = "idle-timeout",
	[CONN_END_GRACE] = "grace",
	[CONN_END_ONCE] = "once",
	[CONN_END_PROXY_MISSING] = "proxy-missing",
	[CONN_END_PROXY_MALFORMED] = "proxy-malformed",
	[CONN_END_PROXY_OVERSIZED] = "proxy-oversized",
	[CONN_END_PROXY_UNSUPPORTED] = "proxy-unsupported",
	[CONN_END_PROXY_TIMEOUT] = "proxy-timeout",
	[CONN_END_PROXY_TRUNCATED] = "proxy-truncated",
};

static const enum metrics_counter end_counters[CONN_ENDS] = {
	[CONN_END_EOF] = METRICS_CLOSED_EOF,
	[CONN_END_RESET] = METRICS_CONN_ERRORS,
	[CONN_END_IDLE] = METRICS_IDLE_TIMEOUTS,
	[CONN_END_GRACE] = METRICS_CLOSED_GRACE,
	[CONN_END_ONCE] = METRICS_CLOSED_ONCE,
	[CONN_END_PROXY_MISSING] = METRICS_PROXY_MISSING,
	[CONN_END_PROXY_MALFORMED] = METRICS_PROXY_MALFORMED,
	[CONN_END_PROXY_OVERSIZED] = METRICS_PROXY_OVERSIZED,
	[CONN_END_PROXY_UNSUPPORTED] = METRICS_PROXY_UNSUPPORTED,
	[CONN_END_PROXY_TIMEOUT] = METRICS_PROXY_TIMEOUT,
	[CONN_END_PROXY_TRUNCATED] = METRICS_PROXY_TRUNCATED,
};

const char *conn_end_name(enum conn_end end)
{
	return (unsigned)end < CONN_ENDS ? end_names[end] : "?";
}

enum conn_end conn_end_done(const struct conn *c)
{
	return (c->flags & CONN_ONCE) && c->got_chunk ? CONN_END_ONCE : CONN_END_EOF;
}

enum conn_end conn_end_proxy(enum proxy_result r)
{
	switch (proxy_result_reason(r)) {
	case PROXY_REASON_MISSING:
		return CONN_END_PROXY_MISSING;
	case PROXY_REASON_OVERSIZED:
		return CONN_END_PROXY_OVERSIZED;
	case PROXY_REASON_UNSUPPORTED:
		return CONN_END_PROXY_UNSUPPORTED;
	case PROXY_REASON_TIMEOUT:
		return CONN_END_PROXY_TIMEOUT;
	case PROXY_REASON_TRUNCATED:
		return CONN_END_PROXY_TRUNCATED;
	default:
		return CONN_END_PROXY_MALFORMED;
	}
}

void conn_stats_start(struct conn_stats *st, int fd, uint64_t now_ms)
{
	char peer[NET_NAMELEN];
	size_t n;

	*st = (struct conn_stats){0};
	if (!log_enabled(LOGL_DEBUG))
		return;
	net_format_peer(fd, peer, sizeof(peer));
	n = strlen(peer) + 1;
	st->log = malloc(sizeof(*st->log) + n); /* NULL: the end line says "?" */
	if (!st->log)
		return;
	*st->log = (struct conn_log){.start_ms = now_ms};
	memcpy(st->log->peer, peer, n);
}

void conn_stats_refused(struct conn_stats *st, enum proxy_result r)
{
	if (st->proxy)
		st->proxy->err = r;
}

static enum proxy_result refusal(const struct conn_stats *st)
{
	return st->proxy ? st->proxy->err : PROXY_OK;
}

static bool is_proxy_refusal(enum conn_end end)
{
	return end >= CONN_END_PROXY_MISSING && end <= CONN_END_PROXY_TRUNCATED;
}

/* The -v line: "connection ended end=eof bytes_in=... peer=ADDR". */
static void log_end(const struct conn_stats *st, enum conn_end end)
{
	char peer[NET_NAMELEN];
	static const struct conn_log unknown = {0};
	const struct conn_log *cl = st->log ? st->log : &unknown;
	const char *via = st->log ? st->log->peer : "?";
	const struct proxy_stage *ps = st->proxy;
	struct log_field f[10] = {
		{"end", conn_end_name(end), 0},
		{"bytes_in", NULL, cl->bytes_in},
		{"bytes_out", NULL, cl->bytes_out},
		{"msgs_in", NULL, cl->msgs_in},
		{"msgs_out", NULL, cl->msgs_out},
		{"duration_ms", NULL, st->log ? clock_now_ms() - cl->start_ms : 0},
	};
	int n = 6;

	if (is_proxy_refusal(end))
		f[n++] = (struct log_field){"detail", proxy_result_str(refusal(st)), 0};
	if (ps && ps->src_len) {
		/* The balancer's own address, for whoever debugs the path. */
		net_format_sockaddr((const struct sockaddr *)&ps->src, ps->src_len, peer,
				    sizeof(peer));
		f[n++] = (struct log_field){"via", via, 0};
		f[n++] = (struct log_field){"peer", peer, 0};
	} else {
		/* Last: a unix peer's path may hold anything, spaces included. */
		f[n++] = (struct log_field){"peer", via, 0};
	}
	log_fields(LOGL_DEBUG, "connection ended", f, n);
}

/* Without -v, a refused header is still worth a line now and then. */
static void warn_proxy_refusal(int fd, const struct conn_stats *st)
{
	static _Atomic uint64_t last_ms;
	uint64_t now = clock_now_ms(), was = atomic_load(&last_ms);
	char peer[NET_NAMELEN];

	if (!log_enabled(LOGL_WARN) || (was && now - was < PROXY_WARN_EVERY_MS) ||
	    !atomic_compare_exchange_strong(&last_ms, &was, now))
		return;
	net_format_peer(fd, peer, sizeof(peer));
	log_warn("PROXY header refused (%s) from %s; at most one such line a minute, -v logs "
		 "each",
		 proxy_result_str(refusal(st)), peer);
}

void conn_ended(struct metrics_worker *m, int fd, struct conn_stats *st, enum conn_end end)
{
	metrics_add(m, METRICS_CLOSED, 1);
	metrics_add(m, end_counters[end], 1);
	if (log_enabled(LOGL_DEBUG))
		log_end(st, end);
	else if (is_proxy_refusal(end))
		warn_proxy_refusal(fd, st);
	proxy_stage_free(st->proxy);
	st->proxy = NULL;
	free(st->log);
	st->log = NULL;
}
