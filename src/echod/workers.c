/*
 * workers.c - starting, gathering and joining the event-loop workers.
 *
 * The start gate is a counter and a broadcast: every arrival wakes every
 * waiter, and each waiter checks the same condition (all expected workers
 * arrived), so no wake-up can go to the wrong one.  The number expected is
 * known only once the threads are created, which is why it is not a
 * pthread_barrier: a thread that fails to start lowers it.
 */
#include "workers.h"

#include "log.h"
#include "net.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

struct start_gate {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int expected; /* -1 until every thread was created */
	int arrived;
	int err;     /* the first failure: a thread that did not start, a set-up */
	bool opened; /* every worker arrived and ops->all_set_up ran */
};

struct runner {
	const struct worker_ops *ops;
	struct start_gate gate;
};

struct worker_thread {
	struct runner *r;
	int index;
	pthread_t tid;
	int rc;
};

/*
 * Arrives at the gate with this worker's set-up result; true when all may
 * serve.  The first worker through runs ops->all_set_up, under the lock, so
 * nobody serves before it returned.
 */
static bool gate_pass(struct start_gate *g, int rc, const struct worker_ops *ops)
{
	bool go;

	pthread_mutex_lock(&g->mu);
	g->arrived++;
	if (rc < 0 && !g->err)
		g->err = rc;
	pthread_cond_broadcast(&g->cv);
	while (g->expected < 0 || g->arrived < g->expected)
		pthread_cond_wait(&g->cv, &g->mu);
	if (!g->opened) {
		g->opened = true;
		if (!g->err && ops->all_set_up)
			g->err = ops->all_set_up(ops->ctx);
	}
	go = !g->err;
	pthread_mutex_unlock(&g->mu);
	return go;
}

/* Says how many workers will arrive; err is a failure to start the others. */
static void gate_expect(struct start_gate *g, int n, int err)
{
	pthread_mutex_lock(&g->mu);
	g->expected = n;
	if (err < 0 && !g->err)
		g->err = err;
	pthread_cond_broadcast(&g->cv);
	pthread_mutex_unlock(&g->mu);
}

/* Pins the calling worker to its CPU; a failure (a CPU taken away since) costs a warning. */
static void pin_worker(const struct cpu_list *pin, int i)
{
	int rc;

	if (!pin || i >= pin->n)
		return;
	rc = cpus_pin_self(pin->cpu[i]);
	if (rc < 0)
		log_warn("worker %d: cannot pin to CPU %d: %s; it runs unpinned", i, pin->cpu[i],
			 strerror(-rc));
}

/*
 * --worker-sched: makes the calling worker, and only it (pid 0 is the
 * calling thread), SCHED_BATCH, so its wake-ups never preempt the task on
 * its CPU (locality.c says why that pays).  A failure costs a warning.
 */
static void batch_worker(const struct worker_ops *ops, int i)
{
	struct sched_param param = {.sched_priority = 0};

	if (ops->batch && sched_setscheduler(0, SCHED_BATCH, &param) < 0)
		log_warn("worker %d: cannot make it SCHED_BATCH: %s; it keeps its policy", i,
			 strerror(errno));
}

static void *worker_thread_main(void *arg)
{
	struct worker_thread *t = arg;
	const struct worker_ops *ops = t->r->ops;
	int rc;

	pin_worker(ops->pin, t->index);
	batch_worker(ops, t->index);
	rc = ops->setup(ops->ctx, t->index);

	if (gate_pass(&t->r->gate, rc, ops))
		t->rc = ops->serve(ops->ctx, t->index);
	/* Else another worker failed: nobody serves. */
	if (rc == 0 && ops->finish)
		ops->finish(ops->ctx, t->index);
	return NULL;
}

int workers_run(const struct worker_ops *ops, int n)
{
	struct runner r = {.ops = ops,
			   .gate = {.mu = PTHREAD_MUTEX_INITIALIZER,
				    .cv = PTHREAD_COND_INITIALIZER,
				    .expected = -1}};
	struct worker_thread *t = calloc((size_t)n, sizeof(*t));
	int started, err = 0, rc = 0;

	if (!t)
		return -ENOMEM;
	for (started = 0; started < n; started++) {
		t[started] = (struct worker_thread){.r = &r, .index = started};
		if (started == 0)
			continue; /* worker 0 is this thread */
		err = -pthread_create(&t[started].tid, NULL, worker_thread_main, &t[started]);
		if (err < 0) {
			log_error("cannot start worker %d: %s", started, strerror(-err));
			break;
		}
	}
	gate_expect(&r.gate, started, err);
	worker_thread_main(&t[0]);
	for (int i = 1; i < started; i++)
		pthread_join(t[i].tid, NULL);
	rc = r.gate.err;
	for (int i = 0; i < started && rc == 0; i++)
		rc = t[i].rc;
	free(t);
	return rc;
}

uint64_t deadline_earliest(uint64_t a, uint64_t b)
{
	if (!a)
		return b;
	return !b || a < b ? a : b;
}

int deadline_timeout_ms(uint64_t deadline, uint64_t now)
{
	if (!deadline)
		return -1;
	if (deadline <= now)
		return 0;
	return deadline - now > 60000 ? 60000 : (int)(deadline - now);
}
