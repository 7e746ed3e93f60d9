/*
 * cpus.c - CPU lists: parsing, formatting, the allowed set, pinning.
 *
 * The parser is plain C; the allowed set and pinning are Linux's
 * sched_getaffinity(2) and sched_setaffinity(2), with a fallback to "every
 * online CPU" where the first fails.
 */
#include "cpus.h"

#include <ctype.h>
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Reads a CPU number at *s; advances *s.  Returns it, or -1. */
static long parse_cpu(const char **s)
{
	char *end;
	long v;

	if (!isdigit((unsigned char)**s))
		return -1;
	errno = 0;
	v = strtol(*s, &end, 10);
	if (errno || v >= CPUS_MAX)
		return -1;
	*s = end;
	return v;
}

static int add_range(struct cpu_list *l, long lo, long hi, char *err, size_t errlen)
{
	for (long c = lo; c <= hi; c++) {
		if (cpus_index(l, (int)c) >= 0) {
			snprintf(err, errlen, "CPU %ld is named twice", c);
			return -1;
		}
		l->cpu[l->n++] = (int)c;
	}
	return 0;
}

int cpus_parse(const char *s, struct cpu_list *l, char *err, size_t errlen)
{
	const char *item = s;

	l->n = 0;
	for (;;) {
		long lo = parse_cpu(&s), hi = lo;

		if (lo >= 0 && *s == '-') {
			s++;
			hi = parse_cpu(&s);
		}
		if (lo < 0 || hi < 0 || (*s && *s != ',')) {
			snprintf(err, errlen, "\"%.*s\" is not a CPU number or range N-M (0 to %d)",
				 (int)strcspn(item, ","), item, CPUS_MAX - 1);
			return -1;
		}
		if (hi < lo) {
			snprintf(err, errlen, "range %ld-%ld goes down", lo, hi);
			return -1;
		}
		if (add_range(l, lo, hi, err, errlen) < 0)
			return -1;
		if (!*s)
			return 0;
		item = ++s;
	}
}

void cpus_format(const struct cpu_list *l, char *buf, size_t buflen)
{
	size_t len = 0;

	buf[0] = '\0';
	for (int i = 0; i < l->n && len < buflen; i++) {
		int j = i;
		int w;

		while (j + 1 < l->n && l->cpu[j + 1] == l->cpu[j] + 1)
			j++;
		if (j > i)
			w = snprintf(buf + len, buflen - len, "%s%d-%d", i ? "," : "", l->cpu[i],
				     l->cpu[j]);
		else
			w = snprintf(buf + len, buflen - len, "%s%d", i ? "," : "", l->cpu[i]);
		if (w < 0)
			return;
		len += (size_t)w;
		i = j;
	}
}

int cpus_allowed(struct cpu_list *l)
{
	cpu_set_t set;
	long online;
	int rc = -EINVAL;

	l->n = 0;
	if (sched_getaffinity(0, sizeof(set), &set) == 0) {
		for (int c = 0; c < CPUS_MAX; c++)
			if (CPU_ISSET(c, &set))
				l->cpu[l->n++] = c;
		if (l->n)
			return 0;
	} else {
		rc = -errno;
	}
	online = sysconf(_SC_NPROCESSORS_ONLN);
	for (long c = 0; c < (online > 0 ? online : 1) && c < CPUS_MAX; c++)
		l->cpu[l->n++] = (int)c;
	return rc;
}

int cpus_index(const struct cpu_list *l, int cpu)
{
	for (int i = 0; i < l->n; i++)
		if (l->cpu[i] == cpu)
			return i;
	return -1;
}

bool cpus_within(const struct cpu_list *sub, const struct cpu_list *set, int *missing)
{
	for (int i = 0; i < sub->n; i++)
		if (cpus_index(set, sub->cpu[i]) < 0) {
			*missing = sub->cpu[i];
			return false;
		}
	return true;
}

int cpus_pin_self(int cpu)
{
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	return sched_setaffinity(0, sizeof(set), &set) < 0 ? -errno : 0;
}
