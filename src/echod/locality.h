/*
 * locality.h - CPU locality for the event-loop engines (--cpu-affinity).
 *
 * When pinned, worker i runs on CPU cpus.cpu[i] only, and each TCP listen
 * address gets one SO_REUSEPORT listener per worker (listener.per_worker),
 * the kernel told by a small classic BPF program to hand each new
 * connection to the listener of the worker on the CPU that received its
 * SYN.  A connection's softirq work, its worker and its socket's memory
 * then stay on one CPU, and no two workers touch the same listener.
 */
#ifndef ECHOD_LOCALITY_H
#define ECHOD_LOCALITY_H

#include "cpus.h"

#include <linux/filter.h>
#include <stdbool.h>
#include <stddef.h>

#define LOCALITY_WHYLEN 160

/* How the listeners of one address hand connections to workers. */
enum steering {
	STEER_NONE,	    /* one listener shared by every worker: as before */
	STEER_BPF,	    /* per-worker listeners, SO_ATTACH_REUSEPORT_CBPF */
	STEER_INCOMING_CPU, /* per-worker listeners, SO_INCOMING_CPU (kernel refused BPF) */
};

struct locality {
	bool pin;		   /* worker i pinned to cpus.cpu[i] */
	bool per_worker;	   /* TCP addresses get one listener per worker */
	struct cpu_list cpus;	   /* pin: one CPU per worker */
	enum steering steering;	   /* the weakest any TCP address got */
	int groups;		   /* TCP addresses steered */
	char why[LOCALITY_WHYLEN]; /* !pin, or steering weaker than BPF: why */
};

/*
 * Decides from --cpu-affinity (as config.c parsed it), the worker count and
 * the CPUs this process may run on.  engine_workers: the engine runs
 * event-loop workers (epoll, uring).
 */
void locality_plan(struct locality *loc, const char *mode, const struct cpu_list *list, int workers,
		   bool engine_workers, const struct cpu_list *allowed);

/* Notes that the listeners could not be per worker (systemd's, say): why. */
void locality_no_steering(struct locality *loc, const char *why);

/*
 * Steers the n listeners fds[] of one address (one per worker, in the
 * order they joined their reuseport group) to worker cpus->cpu[i]'s CPU.
 * Returns what it could do; on a fallback, why gets the kernel's refusal.
 */
enum steering locality_steer(const int *fds, int n, const struct cpu_list *cpus, char *why,
			     size_t whylen);

/* Records what one address got: the log line tells the weakest. */
void locality_note(struct locality *loc, enum steering got, const char *why);

/* The one log line on what was done ("2 workers pinned to CPUs 0-1; ..."). */
void locality_describe(const struct locality *loc, char *buf, size_t buflen);

/*
 * The classic BPF program that maps the receiving CPU to the position of
 * that CPU in cpus (the index of its worker's listener in the reuseport
 * group), and any other CPU to an index past the group (the kernel then
 * picks by hash).  Returns its length, or -1 when prog (max entries) is too
 * short.  Exposed for the unit tests.
 */
int locality_program(const struct cpu_list *cpus, struct sock_filter *prog, int max);

/*
 * --worker-sched: true when the workers should run SCHED_BATCH.  "auto":
 * when they are pinned (pinned) and sleep between events (!busy_poll);
 * "batch": always; "normal": never.
 */
bool locality_batch(const char *worker_sched, bool pinned, bool busy_poll);

#define LOCALITY_PROGRAM_MAX (2 * CPUS_MAX + 2)

#endif
