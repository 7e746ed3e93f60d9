/*
 * cpus.h - lists of CPU numbers ("0-3,8"), as echod --cpu-affinity and
 * echoc bench --cpus take them, and the CPUs this process may run on.
 */
#ifndef ECHOD_CPUS_H
#define ECHOD_CPUS_H

#include <stdbool.h>
#include <stddef.h>

#define CPUS_MAX 1024 /* as glibc's cpu_set_t: CPU numbers 0..1023 */

/* CPU numbers in the order given: position i is worker (or thread) i's CPU. */
struct cpu_list {
	int n;
	int cpu[CPUS_MAX];
};

/*
 * Parses "N", "N-M" and comma-separated lists of them ("0-3,8") into l, in
 * the order written.  Refuses an empty item, a descending range, a number
 * beyond CPUS_MAX - 1 and a CPU named twice.  Returns 0, or -1 with one line
 * in err that names the bad part (the caller adds the option's name).
 */
int cpus_parse(const char *s, struct cpu_list *l, char *err, size_t errlen);

/* Writes l as "0-3,8" (ranges where consecutive) into buf. */
void cpus_format(const struct cpu_list *l, char *buf, size_t buflen);

/*
 * The CPUs this process may run on (sched_getaffinity: taskset, cpusets),
 * in ascending order.  Returns 0, or -errno (l then holds CPU 0..online-1).
 */
int cpus_allowed(struct cpu_list *l);

/* Position of cpu in l, or -1 when l does not hold it. */
int cpus_index(const struct cpu_list *l, int cpu);

/* True when every CPU of sub is in set; else *missing is the first that is not. */
bool cpus_within(const struct cpu_list *sub, const struct cpu_list *set, int *missing);

/* Pins the calling thread to cpu.  Returns 0 or -errno. */
int cpus_pin_self(int cpu);

#endif
