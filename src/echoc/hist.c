/*
 * hist.c - log-linear latency histogram, HdrHistogram's bucket scheme.
 *
 * Bucket index of v: v itself below 2^SUB; otherwise the top SUB+1
 * significant bits of v, offset by the octave.  Recording is a shift, a
 * count-leading-zeros and an increment, cheap enough for every message.
 */
#include "hist.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define SUB	   (UINT64_C(1) << HIST_SUB_BITS)
#define TICKS_HALF 5 /* percentile rows per halving of 1 - p, as HdrHistogram's default */

static unsigned bucket_of(uint64_t v)
{
	unsigned e;

	if (v > HIST_MAX_NS)
		v = HIST_MAX_NS;
	if (v < SUB)
		return (unsigned)v;
	e = 63u - (unsigned)__builtin_clzll(v); /* e >= HIST_SUB_BITS */
	return (unsigned)(SUB + ((e - HIST_SUB_BITS) << HIST_SUB_BITS) +
			  ((v >> (e - HIST_SUB_BITS)) - SUB));
}

/* The largest value that lands in bucket i. */
static uint64_t bucket_high(unsigned i)
{
	unsigned shift;

	if (i < SUB)
		return i;
	shift = (unsigned)((i - SUB) >> HIST_SUB_BITS);
	return (((SUB + ((i - SUB) & (SUB - 1))) + 1) << shift) - 1;
}

int hist_init(struct hist *h)
{
	memset(h, 0, sizeof(*h));
	h->counts = calloc(HIST_BUCKETS, sizeof(*h->counts));
	if (!h->counts)
		return -ENOMEM;
	h->min = UINT64_MAX;
	return 0;
}

void hist_free(struct hist *h)
{
	free(h->counts);
	h->counts = NULL;
}

void hist_reset(struct hist *h)
{
	uint64_t *counts = h->counts;

	memset(counts, 0, HIST_BUCKETS * sizeof(*counts));
	memset(h, 0, sizeof(*h));
	h->counts = counts;
	h->min = UINT64_MAX;
}

void hist_record(struct hist *h, uint64_t v)
{
	h->counts[bucket_of(v)]++;
	h->total++;
	if (v < h->min)
		h->min = v;
	if (v > h->max)
		h->max = v;
	h->sum += (double)v;
	h->sumsq += (double)v * (double)v;
}

void hist_merge(struct hist *dst, const struct hist *src)
{
	for (unsigned i = 0; i < HIST_BUCKETS; i++)
		dst->counts[i] += src->counts[i];
	dst->total += src->total;
	if (src->min < dst->min)
		dst->min = src->min;
	if (src->max > dst->max)
		dst->max = src->max;
	dst->sum += src->sum;
	dst->sumsq += src->sumsq;
}

/* The rank (1-based) of the recording at percentile pct. */
static uint64_t rank_of(const struct hist *h, double pct)
{
	double r = ceil(pct / 100.0 * (double)h->total);

	if (r < 1)
		return 1;
	return r > (double)h->total ? h->total : (uint64_t)r;
}

uint64_t hist_percentile(const struct hist *h, double pct)
{
	uint64_t want, seen = 0;

	if (!h->total)
		return 0;
	want = rank_of(h, pct);
	for (unsigned i = 0; i < HIST_BUCKETS; i++) {
		seen += h->counts[i];
		/* The top bucket also holds every clamped value. */
		if (seen >= want && i < HIST_BUCKETS - 1 && bucket_high(i) < h->max)
			return bucket_high(i);
		if (seen >= want)
			return h->max;
	}
	return h->max;
}

double hist_mean(const struct hist *h)
{
	return h->total ? h->sum / (double)h->total : 0.0;
}

double hist_stddev(const struct hist *h)
{
	double m = hist_mean(h), var;

	if (!h->total)
		return 0.0;
	var = h->sumsq / (double)h->total - m * m;
	return var > 0 ? sqrt(var) : 0.0;
}

/* How many recordings are at or below v. */
static uint64_t count_upto(const struct hist *h, uint64_t v)
{
	unsigned last = bucket_of(v);
	uint64_t n = 0;

	for (unsigned i = 0; i <= last; i++)
		n += h->counts[i];
	return n;
}

/*
 * The next percentile row: HdrHistogram halves the distance to 100% every
 * TICKS_HALF rows, so the tail gets as many rows as the body.
 */
static double next_percentile(double p)
{
	double halvings = floor(log2(100.0 / (100.0 - p))) + 1;

	return p + 100.0 / (TICKS_HALF * pow(2.0, halvings));
}

static void write_footer(const struct hist *h, FILE *out, double unit_ns)
{
	fprintf(out, "#[Mean    = %12.3f, StdDeviation   = %12.3f]\n", hist_mean(h) / unit_ns,
		hist_stddev(h) / unit_ns);
	fprintf(out, "#[Max     = %12.3f, Total count    = %12llu]\n", (double)h->max / unit_ns,
		(unsigned long long)h->total);
	fprintf(out, "#[Buckets = %12d, SubBuckets     = %12llu]\n",
		HIST_TOP_BIT - HIST_SUB_BITS + 1, (unsigned long long)SUB);
}

int hist_write_percentiles(const struct hist *h, FILE *out, double unit_ns)
{
	uint64_t v, n;
	double p = 0.0;

	fprintf(out, "%12s %14s %10s %14s\n\n", "Value", "Percentile", "TotalCount",
		"1/(1-Percentile)");
	/* Bounded: each row moves p at least 1/(TICKS_HALF * 2^64) of the way. */
	while (h->total && p < 100.0) {
		v = hist_percentile(h, p);
		n = count_upto(h, v);
		if (n >= h->total)
			break;
		fprintf(out, "%12.3f %1.12f %10llu %14.2f\n", (double)v / unit_ns, p / 100.0,
			(unsigned long long)n, 1.0 / (1.0 - p / 100.0));
		p = next_percentile(p);
	}
	if (h->total)
		fprintf(out, "%12.3f %1.12f %10llu\n", (double)h->max / unit_ns, 1.0,
			(unsigned long long)h->total);
	write_footer(h, out, unit_ns);
	return ferror(out) ? -EIO : 0;
}
