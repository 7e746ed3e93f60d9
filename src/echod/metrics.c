/*
 * metrics.c - per-worker counters, summed on read, and their exposition in
 * the Prometheus text format (version 0.0.4).
 *
 * The exposition is table-driven: families[] names each family once (name,
 * TYPE, HELP, label key) and rows[] maps every counter of the enum to its
 * family and label value, so a new counter is one row (and perhaps one
 * family).  A family's samples are printed together, in rows[] order, under
 * one HELP and one TYPE line, as the format requires.
 */
#include "metrics.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

void metrics_snapshot_counters(const struct metrics *m, struct metrics_snapshot *s)
{
	for (int c = 0; c < METRICS_NCOUNTERS; c++)
		s->counters[c] = metrics_sum(m, (enum metrics_counter)c);
}

enum family {
	FAM_ACCEPTED,
	FAM_CLOSED,
	FAM_CLOSED_BY_REASON,
	FAM_ACCEPT_PAUSES,
	FAM_PROXY_ERRORS,
	FAM_BYTES_IN,
	FAM_BYTES_OUT,
	FAM_MSGS_IN,
	FAM_MSGS_OUT,
	FAM_UDP_ANSWERED,
	FAM_UDP_DROPPED,
	FAM_COUNT,
};

struct family_desc {
	const char *name;
	const char *help;
	const char *label; /* the label's key, or NULL */
};

/* Every family is a counter; the gauges are written out in metrics_render(). */
static const struct family_desc families[FAM_COUNT] = {
	[FAM_ACCEPTED] = {"echod_connections_accepted_total", "TCP and unix connections accepted.",
			  NULL},
	[FAM_CLOSED] = {"echod_connections_closed_total",
			"Connections closed, for whatever reason (the reasons below and others).",
			NULL},
	[FAM_CLOSED_BY_REASON] = {"echod_connections_closed_by_reason_total",
				  "Connections closed, by reason: eof (the peer ended and got "
				  "all its echo), reset, idle_timeout, grace (cut off at the end "
				  "of --grace), once (--once done).",
				  "reason"},
	[FAM_ACCEPT_PAUSES] = {"echod_accept_pauses_total",
			       "Times accepting paused, by reason: max_conns (--max-conns "
			       "reached), descriptors (out of descriptors or memory).",
			       "reason"},
	[FAM_PROXY_ERRORS] = {"echod_proxy_header_errors_total",
			      "Connections refused for a missing or bad PROXY protocol header "
			      "(--proxy-protocol), by reason.",
			      "reason"},
	[FAM_BYTES_IN] = {"echod_bytes_received_total",
			  "Bytes received on TCP and unix connections.", NULL},
	[FAM_BYTES_OUT] = {"echod_bytes_sent_total", "Bytes echoed on TCP and unix connections.",
			   NULL},
	[FAM_MSGS_IN] = {"echod_messages_received_total",
			 "Reads that returned data on TCP and unix connections.", NULL},
	[FAM_MSGS_OUT] = {"echod_messages_sent_total",
			  "Sends that moved data on TCP and unix connections.", NULL},
	[FAM_UDP_ANSWERED] = {"echod_udp_datagrams_answered_total", "UDP datagrams echoed.", NULL},
	[FAM_UDP_DROPPED] = {"echod_udp_datagrams_dropped_total",
			     "UDP datagrams not echoed, by reason: loop_guard (a well-known "
			     "service port), rate_limit (over --udp-rate), truncated (longer "
			     "than the buffer), send_error (the kernel refused the reply).",
			     "reason"},
};

struct row {
	enum family family;
	const char *label; /* the label's value; NULL when the family has none */
};

static const struct row rows[METRICS_NCOUNTERS] = {
	[METRICS_ACCEPTED] = {FAM_ACCEPTED, NULL},
	[METRICS_CLOSED] = {FAM_CLOSED, NULL},
	[METRICS_CLOSED_EOF] = {FAM_CLOSED_BY_REASON, "eof"},
	[METRICS_CONN_ERRORS] = {FAM_CLOSED_BY_REASON, "reset"},
	[METRICS_IDLE_TIMEOUTS] = {FAM_CLOSED_BY_REASON, "idle_timeout"},
	[METRICS_CLOSED_GRACE] = {FAM_CLOSED_BY_REASON, "grace"},
	[METRICS_CLOSED_ONCE] = {FAM_CLOSED_BY_REASON, "once"},
	[METRICS_MAXCONNS_PAUSES] = {FAM_ACCEPT_PAUSES, "max_conns"},
	[METRICS_ACCEPT_PAUSES] = {FAM_ACCEPT_PAUSES, "descriptors"},
	[METRICS_PROXY_MISSING] = {FAM_PROXY_ERRORS, "missing"},
	[METRICS_PROXY_MALFORMED] = {FAM_PROXY_ERRORS, "malformed"},
	[METRICS_PROXY_OVERSIZED] = {FAM_PROXY_ERRORS, "oversized"},
	[METRICS_PROXY_UNSUPPORTED] = {FAM_PROXY_ERRORS, "unsupported"},
	[METRICS_PROXY_TIMEOUT] = {FAM_PROXY_ERRORS, "timeout"},
	[METRICS_PROXY_TRUNCATED] = {FAM_PROXY_ERRORS, "truncated"},
	[METRICS_BYTES_IN] = {FAM_BYTES_IN, NULL},
	[METRICS_BYTES_OUT] = {FAM_BYTES_OUT, NULL},
	[METRICS_MSGS_IN] = {FAM_MSGS_IN, NULL},
	[METRICS_MSGS_OUT] = {FAM_MSGS_OUT, NULL},
	[METRICS_UDP_ECHOED] = {FAM_UDP_ANSWERED, NULL},
	[METRICS_UDP_GUARD_DROPS] = {FAM_UDP_DROPPED, "loop_guard"},
	[METRICS_UDP_RATE_DROPS] = {FAM_UDP_DROPPED, "rate_limit"},
	[METRICS_UDP_TRUNCATED] = {FAM_UDP_DROPPED, "truncated"},
	[METRICS_UDP_SEND_ERRORS] = {FAM_UDP_DROPPED, "send_error"},
};

const char *metrics_name(enum metrics_counter c)
{
	return families[rows[c].family].name;
}

/* An output cursor: printf-style appends that remember overflowing. */
struct out {
	char *buf;
	size_t cap, len;
	bool full;
};

__attribute__((format(printf, 2, 3))) static void put(struct out *o, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (o->full)
		return;
	va_start(ap, fmt);
	n = vsnprintf(o->buf + o->len, o->cap - o->len, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= o->cap - o->len)
		o->full = true;
	else
		o->len += (size_t)n;
}

static void put_header(struct out *o, const char *name, const char *type, const char *help)
{
	put(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void put_family(struct out *o, enum family f, const unsigned long *counters)
{
	const struct family_desc *d = &families[f];

	put_header(o, d->name, "counter", d->help);
	for (int c = 0; c < METRICS_NCOUNTERS; c++) {
		if (rows[c].family != f)
			continue;
		if (rows[c].label)
			put(o, "%s{%s=\"%s\"} %lu\n", d->name, d->label, rows[c].label,
			    counters[c]);
		else
			put(o, "%s %lu\n", d->name, counters[c]);
	}
}

/* A gauge (or the process's CPU counter) with one unlabelled sample; left out when v < 0. */
static void put_single(struct out *o, const char *name, const char *type, const char *help,
		       double v)
{
	if (v < 0)
		return;
	put_header(o, name, type, help);
	/* 15 digits: integers below 10^15 exactly, a start time to the
	 * microsecond, and no noise digits (1796139979.4100001). */
	put(o, "%s %.15g\n", name, v);
}

/*
 * A label value as the format wants it: backslash, double quote and newline
 * escaped.  version and engine are ours, but the text must stay parseable
 * whatever they hold.
 */
static void put_label_value(struct out *o, const char *v)
{
	for (; *v; v++) {
		if (*v == '\\' || *v == '"')
			put(o, "\\%c", *v);
		else if (*v == '\n')
			put(o, "\\n");
		else
			put(o, "%c", *v);
	}
}

static void put_process(struct out *o, const struct metrics_process *p)
{
	put_single(o, "process_cpu_seconds_total", "counter",
		   "Total user and system CPU time spent in seconds.", p->cpu_seconds);
	put_single(o, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.",
		   p->resident_bytes);
	put_single(o, "process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.",
		   p->virtual_bytes);
	put_single(o, "process_open_fds", "gauge", "Number of open file descriptors.", p->open_fds);
	put_single(o, "process_max_fds", "gauge", "Maximum number of open file descriptors.",
		   p->max_fds);
	put_single(o, "process_start_time_seconds", "gauge",
		   "Start time of the process since unix epoch in seconds.", p->start_time);
}

int metrics_render(const struct metrics_snapshot *s, char *buf, size_t cap)
{
	struct out o = {.buf = buf, .cap = cap};

	if (!cap)
		return -1;
	buf[0] = '\0';
	for (int f = 0; f < FAM_COUNT; f++)
		put_family(&o, (enum family)f, s->counters);
	put_single(&o, "echod_connections_active", "gauge", "Connections being served now.",
		   (double)(s->active < 0 ? 0 : s->active));
	put_header(&o, "echod_info", "gauge", "The version and engine of this echod; always 1.");
	put(&o, "echod_info{version=\"");
	put_label_value(&o, s->version);
	put(&o, "\",engine=\"");
	put_label_value(&o, s->engine);
	put(&o, "\"} 1\n");
	put_process(&o, &s->process);
	return o.full ? -1 : (int)o.len;
}
