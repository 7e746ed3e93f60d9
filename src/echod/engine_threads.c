/*
 * engine_threads.c - one thread per connection: the tutorial's fix.
 *
 * Technique: the calling thread accepts (engine_accept_loop) and starts a
 * thread per connection, which serves it with blocking-style calls
 * (engine_serve_blocking).  A slow client now costs one thread, not the
 * whole server.  Needs POSIX threads.
 *
 * On stop, every connection thread sees the stop pipe in its own poll(2),
 * finishes within the grace period and exits; the acceptor joins them all.
 * Finished threads are joined when the next connection arrives, so after a
 * burst their stacks are kept until then, not forever.
 *
 * Trade-off: a thread (stack and scheduling) per connection; fine for
 * hundreds, wasteful for tens of thousands, where epoll or uring fit.
 */
#include "engine.h"

#include "clock.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The buffer lives on the heap, so a small stack is plenty. */
#define CONN_THREAD_STACK (128 * 1024)
/* At most one "cannot start a connection thread" line this often. */
#define REFUSAL_LOG_EVERY_MS 60000

struct conn_thread {
	pthread_t tid;
	int fd;
	atomic_bool finished;
	struct threads *t;
	struct conn_thread *next;
};

struct threads {
	struct accept_loop al;
	struct conn_thread *live; /* touched by the acceptor only */
	int wake[2];		  /* a thread freed a --max-conns slot */
	pthread_attr_t attr;
	uint64_t next_refusal_log_ms; /* refusals are logged at most once a minute */
	unsigned long quiet_refusals; /* not logged since the last line */
};

static int probe(char *why, size_t whylen)
{
	(void)why;
	(void)whylen;
	return 0;
}

static void *conn_main(void *arg)
{
	struct conn_thread *ct = arg;
	struct threads *t = ct->t;

	engine_serve_blocking(t->al.srv, ct->fd, t->al.m);
	if (server_release_slot(t->al.srv) && write(t->wake[1], "", 1) < 0)
		log_debug("wake pipe: %s", strerror(errno));
	atomic_store(&ct->finished, true);
	return NULL;
}

/* Joins the threads that have finished. */
static void reap(struct threads *t, bool all)
{
	struct conn_thread **pp = &t->live, *ct;

	while ((ct = *pp)) {
		if (!all && !atomic_load(&ct->finished)) {
			pp = &ct->next;
			continue;
		}
		pthread_join(ct->tid, NULL);
		*pp = ct->next;
		free(ct);
	}
}

/*
 * Logs a connection refused for want of a thread, at most once a minute:
 * under the memory or thread limit that causes it, every new connection
 * fails the same way, and a line for each would flood the log.
 */
static void log_refusal(struct threads *t, int err)
{
	uint64_t now = clock_now_ms();

	if (now < t->next_refusal_log_ms) {
		t->quiet_refusals++;
		return;
	}
	if (t->quiet_refusals)
		log_warn("cannot start a connection thread: %s; connection refused (and %lu more "
			 "since the last report)",
			 strerror(err), t->quiet_refusals);
	else
		log_warn("cannot start a connection thread: %s; connection refused", strerror(err));
	t->quiet_refusals = 0;
	t->next_refusal_log_ms = now + REFUSAL_LOG_EVERY_MS;
}

static void start_thread(struct accept_loop *al, int fd)
{
	struct threads *t = (struct threads *)al;
	struct conn_thread *ct = calloc(1, sizeof(*ct));
	int rc = ct ? 0 : ENOMEM;

	reap(t, false);
	if (ct) {
		ct->fd = fd;
		ct->t = t;
		atomic_init(&ct->finished, false);
		rc = pthread_create(&ct->tid, &t->attr, conn_main, ct);
	}
	if (rc) {
		/* Shed load: this one connection is refused, the server goes on. */
		log_refusal(t, rc);
		free(ct);
		close(fd);
		server_release_slot(al->srv);
		return;
	}
	ct->next = t->live;
	t->live = ct;
}

static int run(struct server *srv)
{
	struct threads t = {.al = {.srv = srv, .m = &srv->metrics.w[0], .serve = start_thread}};
	int rc;

	if (pipe2(t.wake, O_NONBLOCK | O_CLOEXEC) < 0)
		return -errno;
	t.al.wake_fd = t.wake[0];
	pthread_attr_init(&t.attr);
	pthread_attr_setstacksize(&t.attr, CONN_THREAD_STACK);
	rc = engine_accept_loop(&t.al);
	reap(&t, true);
	pthread_attr_destroy(&t.attr);
	close(t.wake[0]);
	close(t.wake[1]);
	return rc;
}

const struct engine engine_threads = {
	.name = "threads",
	.probe = probe,
	.run = run,
};
