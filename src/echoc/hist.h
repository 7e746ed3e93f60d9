/*
 * hist.h - latency histogram with bounded relative error (HdrHistogram-like).
 *
 * Values are nanoseconds.  Below 2^HIST_SUB_BITS ns every value has its own
 * bucket; above, each power of two is split into 2^HIST_SUB_BITS linear
 * buckets, so a value is reported at most 2^-HIST_SUB_BITS (about 0.1%) above
 * what was recorded, from 1 ns up to HIST_MAX_NS (73 minutes).  Larger values
 * land in the top bucket; the exact maximum is kept separately.
 *
 * Written by hand: Debian packages HdrHistogram for Java and Go only.
 * Not thread-safe: one histogram per thread, merged at the end.
 */
#ifndef ECHOD_HIST_H
#define ECHOD_HIST_H

#include <stdint.h>
#include <stdio.h>

#define HIST_SUB_BITS 10
#define HIST_TOP_BIT  42 /* values up to 2^42 ns, about 73 minutes */
#define HIST_MAX_NS   ((UINT64_C(1) << HIST_TOP_BIT) - 1)
#define HIST_BUCKETS  ((HIST_TOP_BIT - HIST_SUB_BITS + 1) << HIST_SUB_BITS)

struct hist {
	uint64_t *counts; /* HIST_BUCKETS counters */
	uint64_t total;
	uint64_t min, max;
	double sum, sumsq; /* for the mean and standard deviation */
};

/* Returns 0 or -ENOMEM. */
int hist_init(struct hist *h);
void hist_free(struct hist *h);
void hist_reset(struct hist *h);
void hist_record(struct hist *h, uint64_t value_ns);
/* Adds every count of src to dst. */
void hist_merge(struct hist *dst, const struct hist *src);

/*
 * The value at percentile pct (0 to 100): the highest value equivalent to
 * the bucket holding the ceil(pct/100 * total)-th smallest recording,
 * capped at the maximum.  0 for an empty histogram.
 */
uint64_t hist_percentile(const struct hist *h, double pct);
double hist_mean(const struct hist *h);
double hist_stddev(const struct hist *h);

/*
 * Writes the percentile distribution in HdrHistogram's text format (the
 * "Value Percentile TotalCount 1/(1-Percentile)" table and its #[...]
 * footer), values divided by unit_ns (1000: microseconds).  Returns 0 or
 * -EIO.
 */
int hist_write_percentiles(const struct hist *h, FILE *out, double unit_ns);

#endif
