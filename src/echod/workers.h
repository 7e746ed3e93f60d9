/*
 * workers.h - what the event-loop engines (epoll, uring) share.
 *
 * They run srv->workers event loops, one per thread, that set up, start
 * together, serve until the stop and are joined; only the loop itself is
 * the engine's.  The split follows Redis's ae.c, where everything but the
 * aeApi* calls is common.
 */
#ifndef ECHOD_WORKERS_H
#define ECHOD_WORKERS_H

#include "cpus.h"

#include <stdbool.h>
#include <stdint.h>

/* A worker's life, as the engine defines it; i is the worker's index. */
struct worker_ops {
	void *ctx; /* the engine's own state, passed back as is */
	/*
	 * Sets worker i up, on the thread that will run it.  Returns 0, or
	 * -errno after undoing its own set-up.
	 */
	int (*setup)(void *ctx, int i);
	/*
	 * Optional: runs once, when every worker set up and before any serves
	 * (uring forbids new rings there).  Returns 0, or -errno: nobody serves.
	 */
	int (*all_set_up)(void *ctx);
	/* Serves until the stop; called only once every worker set up. */
	int (*serve)(void *ctx, int i);
	/*
	 * Frees what setup() took, on the same thread, after serve() or when
	 * another worker failed to start.  NULL when the engine frees its
	 * workers itself after workers_run() (what one worker frees, another
	 * may still use until all are joined).
	 */
	void (*finish)(void *ctx, int i);
	/*
	 * NULL, or worker i's CPU is pin->cpu[i]: each worker pins itself
	 * before setup(), so what it allocates there is near that CPU.
	 */
	const struct cpu_list *pin;
	/* Each worker makes itself SCHED_BATCH first (--worker-sched, locality.h). */
	bool batch;
};

/*
 * Runs n workers: worker 0 on the calling thread, the others on threads of
 * their own, and joins them.  Nobody serves unless every worker started
 * and set up; then every set-up worker finishes at once.  Returns 0, or
 * the first error: a failed start or set-up, else the lowest worker's
 * serve() error.
 */
int workers_run(const struct worker_ops *ops, int n);

/* The earlier of two deadlines in ms, where 0 means "none". */
uint64_t deadline_earliest(uint64_t a, uint64_t b);

/*
 * The wait until deadline (0: none) for epoll_wait(2) or poll(2): -1 for
 * none, 0 if it passed, else the ms left, at most a minute (a clock jump
 * then costs one extra wake-up, not a lost deadline).
 */
int deadline_timeout_ms(uint64_t deadline, uint64_t now);

#endif
