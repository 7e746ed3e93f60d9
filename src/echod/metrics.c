/*
 * metrics.c - per-worker counters, summed on read.
 */
#include "metrics.h"

#include <errno.h>
#include <stdlib.h>

int metrics_init(struct metrics *m, int nworkers)
{
	m->w = aligned_alloc(64, sizeof(*m->w) * (size_t)nworkers);
	if (!m->w)
		return -ENOMEM;
	for (int i = 0; i < nworkers; i++)
		for (int c = 0; c < METRICS_NCOUNTERS; c++)
			atomic_init(&m->w[i].v[c], 0);
	m->nworkers = nworkers;
	return 0;
}

void metrics_free(struct metrics *m)
{
	free(m->w);
	m->w = NULL;
	m->nworkers = 0;
}

unsigned long metrics_sum(const struct metrics *m, enum metrics_counter c)
{
	unsigned long sum = 0;

	for (int i = 0; i < m->nworkers; i++)
		sum += atomic_load_explicit(&m->w[i].v[c], memory_order_relaxed);
	return sum;
}

const char *metrics_name(enum metrics_counter c)
{
	static const char *const names[METRICS_NCOUNTERS] = {
		[METRICS_ACCEPTED] = "connections_accepted",
		[METRICS_CLOSED] = "connections_closed",
		[METRICS_BYTES_IN] = "bytes_received",
		[METRICS_BYTES_OUT] = "bytes_sent",
		[METRICS_CONN_ERRORS] = "connection_errors",
		[METRICS_IDLE_TIMEOUTS] = "idle_timeouts",
		[METRICS_ACCEPT_PAUSES] = "accept_pauses",
		[METRICS_CLOSED_EOF] = "closed_peer_eof",
		[METRICS_CLOSED_GRACE] = "closed_grace_expired",
		[METRICS_CLOSED_ONCE] = "closed_once_done",
		[METRICS_MSGS_IN] = "messages_received",
		[METRICS_MSGS_OUT] = "messages_sent",
		[METRICS_MAXCONNS_PAUSES] = "max_conns_pauses",
		[METRICS_PROXY_MISSING] = "proxy_missing",
		[METRICS_PROXY_MALFORMED] = "proxy_malformed",
		[METRICS_PROXY_OVERSIZED] = "proxy_oversized",
		[METRICS_PROXY_UNSUPPORTED] = "proxy_unsupported",
		[METRICS_PROXY_TIMEOUT] = "proxy_timeout",
		[METRICS_PROXY_TRUNCATED] = "proxy_truncated",
		[METRICS_UDP_ECHOED] = "udp_datagrams_echoed",
		[METRICS_UDP_TRUNCATED] = "udp_datagrams_truncated",
		[METRICS_UDP_GUARD_DROPS] = "udp_datagrams_dropped_guard",
		[METRICS_UDP_RATE_DROPS] = "udp_datagrams_dropped_rate",
		[METRICS_UDP_SEND_ERRORS] = "udp_send_errors",
	};

	return names[c];
}
