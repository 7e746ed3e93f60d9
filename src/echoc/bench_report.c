/*
 * bench_report.c - what "echoc bench" says: a line per error (the first few
 * of each kind), a progress line a second on a terminal, and the results as
 * a table or one JSON object, with the exit status they make.
 */
#include "bench_worker.h"

#include <err.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define REPORT_LINES 5 /* error lines printed per kind; the rest are counted */

/* ---------------------------------------------------------------- error lines */

/* Why a socket or connect failed, with what the user can do about it. */
const char *bench_explain(int e)
{
	switch (e) {
	case EMFILE:
		return "out of file descriptors (RLIMIT_NOFILE): lower -c or raise ulimit -Hn";
	case ENFILE:
		return "the system is out of file descriptors (fs.file-max)";
	case EADDRNOTAVAIL:
		return "out of ephemeral ports (net.ipv4.ip_local_port_range, TIME_WAIT): lower "
		       "-c or the connection rate, or give more --source addresses";
	default:
		return strerror(e);
	}
}

/* One line per error, the first REPORT_LINES of each kind; the rest are counted. */
void bench_report(_Atomic unsigned *lines, const struct bconn *c, const char *fmt, ...)
{
	char msg[256];
	va_list ap;

	if (atomic_fetch_add_explicit(lines, 1, memory_order_relaxed) >= REPORT_LINES)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	warnx("bench: connection %u: %s", c->id, msg);
}

/* ---------------------------------------------------------------- progress */

static uint64_t bench_load(_Atomic uint64_t *ctr)
{
	return atomic_load_explicit(ctr, memory_order_relaxed);
}

void bench_snapshot(struct bench_worker *ws, long nw, struct bench_totals *t)
{
	memset(t, 0, sizeof(*t));
	for (long i = 0; i < nw; i++) {
		struct bench_counters *ct = &ws[i].ct;

		t->messages += bench_load(&ct->messages);
		t->bytes += bench_load(&ct->bytes);
		t->errors += bench_load(&ct->errors);
		t->mismatches += bench_load(&ct->mismatches);
		t->timeouts += bench_load(&ct->timeouts);
		t->sent += bench_load(&ct->sent);
		t->lost += bench_load(&ct->lost);
		t->duplicates += bench_load(&ct->duplicates);
		t->reordered += bench_load(&ct->reordered);
		t->late += bench_load(&ct->late);
		t->open += bench_load(&ct->open);
		t->verified += bench_load(&ct->verified);
	}
}

/*
 * The datagrams sent in a window: end minus start.  Its messages and bytes
 * come from the workers' histograms (bench.c), errors count the whole run.
 */
void bench_window(struct bench_totals *end, const struct bench_totals *start)
{
	end->sent -= start->sent;
}

void bench_progress(struct bench_worker *ws, long nw, const struct bench_cfg *c,
		    uint64_t elapsed_ns, uint64_t *last_msgs, uint64_t *last_bytes)
{
	struct bench_totals t;

	bench_snapshot(ws, nw, &t);
	warnx("bench: %3llu s %s %10llu messages/s %9.2f MB/s  %llu/%ld open  %llu "
	      "errors  %llu mismatches",
	      (unsigned long long)(elapsed_ns / 1000000000u),
	      elapsed_ns < (uint64_t)c->warmup_ms * 1000000u ? "warm-up" : "       ",
	      (unsigned long long)(t.messages - *last_msgs), (double)(t.bytes - *last_bytes) / 1e6,
	      (unsigned long long)t.open, c->conns, (unsigned long long)t.errors,
	      (unsigned long long)t.mismatches);
	*last_msgs = t.messages;
	*last_bytes = t.bytes;
}

/* ---------------------------------------------------------------- results */

static double per_s(uint64_t n, double secs)
{
	return secs > 0 ? (double)n / secs : 0.0;
}

static double pct_us(const struct hist *h, double p)
{
	return (double)hist_percentile(h, p) / 1000.0;
}

static double per_conn(uint64_t kib, uint64_t conns)
{
	return conns ? (double)kib * 1024.0 / (double)conns : 0.0;
}

/* idle: set-up, the one verified echo of each connection, echoc's memory. */
static void print_idle_table(const struct bench_cfg *c, const struct bench_totals *t,
			     const struct bench_idle *idle, const struct hist *first)
{
	printf("  %-12s %14llu in %.2f s: %.0f connections/s%s\n", "set up",
	       (unsigned long long)idle->up, idle->setup_s,
	       idle->setup_s > 0 ? (double)idle->up / idle->setup_s : 0.0,
	       c->nsources ? "" : " (one source address)");
	if (c->nsources)
		printf("  %-12s %14u addresses (--source %s)\n", "sources", c->nsources,
		       c->source_arg);
	printf("  %-12s %14llu of %ld connections, first echo verified byte for byte\n", "verified",
	       (unsigned long long)t->verified, c->conns);
	printf("  %-12s %10s %10s %10s %10s\n", "first us", "p50", "p99", "p99.9", "max");
	printf("  %-12s %10.1f %10.1f %10.1f %10.1f\n", "", pct_us(first, 50), pct_us(first, 99),
	       pct_us(first, 99.9), (double)first->max / 1000.0);
	printf("  %-12s %14llu KiB RSS (%.0f B per connection), all connections up\n",
	       "echoc memory", (unsigned long long)idle->rss_kib,
	       per_conn(idle->rss_kib, idle->up));
}

static void print_idle_json(const struct bench_cfg *c, const struct bench_totals *t,
			    const struct bench_idle *idle, const struct hist *first)
{
	printf("\"idle\": {\"up\": %llu, \"setup_s\": %.3f, \"setup_per_s\": %.1f, "
	       "\"sources\": %u, \"verified\": %llu, \"first_echo_us\": {\"p50\": %.3f, "
	       "\"p99\": %.3f, \"p999\": %.3f, \"max\": %.3f}, \"rss_kib\": %llu, "
	       "\"rss_per_conn_b\": %.1f}, ",
	       (unsigned long long)idle->up, idle->setup_s,
	       idle->setup_s > 0 ? (double)idle->up / idle->setup_s : 0.0, c->nsources,
	       (unsigned long long)t->verified, pct_us(first, 50), pct_us(first, 99),
	       pct_us(first, 99.9), (double)first->max / 1000.0, (unsigned long long)idle->rss_kib,
	       per_conn(idle->rss_kib, idle->up));
}

static void print_table(const struct bench_cfg *c, const struct bench_totals *t, double secs,
			const struct hist *h, const struct bench_idle *idle,
			const struct hist *first)
{
	printf("echoc bench: %s%s to %s, %ld connections x %ld B, depth %ld, %ld threads\n",
	       c->udp ? "udp " : "", bench_mode_names[c->mode], c->target, c->conns, c->size,
	       c->depth, c->threads);
	printf("  %-12s %14.2f s (warm-up of %.1f s excluded)\n", "measured", secs,
	       (double)c->warmup_ms / 1000.0);
	printf("  %-12s %14llu\n", "messages", (unsigned long long)t->messages);
	printf("  %-12s %14.1f\n", "messages/s", per_s(t->messages, secs));
	printf("  %-12s %14.3f (echoed payload)\n", "MB/s", per_s(t->bytes, secs) / 1e6);
	printf("  %-12s %10s %10s %10s %10s %10s\n", "latency us", "p50", "p90", "p99", "p99.9",
	       "max");
	printf("  %-12s %10.1f %10.1f %10.1f %10.1f %10.1f\n", "", pct_us(h, 50), pct_us(h, 90),
	       pct_us(h, 99), pct_us(h, 99.9), (double)h->max / 1000.0);
	printf("  %-12s %14llu (timeouts %llu)\n", "errors", (unsigned long long)t->errors,
	       (unsigned long long)t->timeouts);
	printf("  %-12s %14llu\n", "mismatches", (unsigned long long)t->mismatches);
	printf("  %-12s %14llu of %ld\n", "open at end", (unsigned long long)t->open, c->conns);
	if (c->mode == MODE_IDLE)
		print_idle_table(c, t, idle, first);
	if (c->udp)
		printf("  %-12s sent %llu, lost %llu, duplicates %llu, reordered %llu, late %llu\n",
		       "datagrams", (unsigned long long)t->sent, (unsigned long long)t->lost,
		       (unsigned long long)t->duplicates, (unsigned long long)t->reordered,
		       (unsigned long long)t->late);
}

static void print_json(const struct bench_cfg *c, const struct bench_totals *t, double secs,
		       const struct hist *h, const struct bench_idle *idle,
		       const struct hist *first)
{
	printf("{\"mode\": \"%s\", \"udp\": %s, \"target\": \"%s\", \"conns\": %ld, \"size\": %ld, "
	       "\"depth\": %ld, \"threads\": %ld, \"rate\": %ld, \"warmup_s\": %.3f, "
	       "\"duration_s\": %.3f, ",
	       bench_mode_names[c->mode], c->udp ? "true" : "false", c->target, c->conns, c->size,
	       c->depth, c->threads, c->rate, (double)c->warmup_ms / 1000.0, secs);
	printf("\"busy_poll\": %s, ", c->busy_poll ? "true" : "false");
	printf("\"messages\": %llu, \"messages_per_s\": %.1f, \"mbytes_per_s\": %.3f, ",
	       (unsigned long long)t->messages, per_s(t->messages, secs),
	       per_s(t->bytes, secs) / 1e6);
	printf("\"latency_us\": {\"p50\": %.3f, \"p90\": %.3f, \"p99\": %.3f, \"p999\": %.3f, "
	       "\"max\": %.3f, \"mean\": %.3f}, ",
	       pct_us(h, 50), pct_us(h, 90), pct_us(h, 99), pct_us(h, 99.9),
	       (double)h->max / 1000.0, hist_mean(h) / 1000.0);
	if (c->mode == MODE_IDLE)
		print_idle_json(c, t, idle, first);
	printf("\"errors\": %llu, \"mismatches\": %llu, \"timeouts\": %llu, \"conns_open\": %llu, ",
	       (unsigned long long)t->errors, (unsigned long long)t->mismatches,
	       (unsigned long long)t->timeouts, (unsigned long long)t->open);
	printf("\"datagrams\": {\"sent\": %llu, \"lost\": %llu, \"duplicates\": %llu, "
	       "\"reordered\": %llu, \"late\": %llu}}\n",
	       (unsigned long long)t->sent, (unsigned long long)t->lost,
	       (unsigned long long)t->duplicates, (unsigned long long)t->reordered,
	       (unsigned long long)t->late);
}

/* The exit status, with one line saying why when it is not 0. */
static int verdict(const struct bench_cfg *c, const struct bench_totals *t)
{
	if (t->mismatches) {
		warnx("bench: %llu mismatches: the echo differed from what was sent",
		      (unsigned long long)t->mismatches);
		return EXIT_FAILURE;
	}
	if (t->errors) {
		warnx("bench: %llu errors", (unsigned long long)t->errors);
		return EXIT_FAILURE;
	}
	/* --pings promised an echo on every connection within the run. */
	if (c->pings && t->verified < (uint64_t)c->conns) {
		warnx("bench: only %llu of %ld connections had an echo verified: a longer -d, or "
		      "a higher --rate",
		      (unsigned long long)t->verified, c->conns);
		return EXIT_FAILURE;
	}
	if (!t->messages) {
		warnx("bench: no message was echoed in the measured window");
		return EXIT_FAILURE;
	}
	return EXIT_SUCCESS;
}

int bench_report_results(const struct bench_cfg *c, struct bench_worker *ws, long nw,
			 const struct bench_totals *t, double secs, const struct bench_idle *idle,
			 FILE *hist_out)
{
	for (long i = 1; i < nw; i++) {
		hist_merge(&ws[0].hist, &ws[i].hist);
		hist_merge(&ws[0].first, &ws[i].first);
	}
	if (c->json)
		print_json(c, t, secs, &ws[0].hist, idle, &ws[0].first);
	else
		print_table(c, t, secs, &ws[0].hist, idle, &ws[0].first);
	fflush(stdout);
	if (hist_out && (hist_write_percentiles(&ws[0].hist, hist_out, 1000.0) < 0 ||
			 fclose(hist_out) == EOF)) {
		warnx("bench: --hist %s: %s", c->hist_path, strerror(errno));
		return EXIT_FAILURE;
	}
	return verdict(c, t);
}
