/*
 * engine_iterative.c - one client at a time: the tutorial's first server.
 *
 * Technique: poll(2) on the listeners, accept, serve that one connection to
 * its end with blocking-style calls (engine_serve_blocking), then accept the
 * next.  Needs nothing but POSIX.
 *
 * Trade-off, on purpose: a slow or idle client blocks every other client,
 * which waits in the listen backlog.  This is the flaw the tutorial shows
 * before it introduces one thread per connection (engine_threads.c).
 */
#include "engine.h"

#include <stdio.h>

static int probe(char *why, size_t whylen)
{
	(void)why;
	(void)whylen;
	return 0;
}

static void serve_here(struct accept_loop *al, int fd)
{
	engine_serve_blocking(al->srv, fd, al->m);
	server_release_slot(al->srv);
}

static int run(struct server *srv)
{
	struct accept_loop al = {
		.srv = srv, .m = &srv->metrics.w[0], .wake_fd = -1, .serve = serve_here};

	return engine_accept_loop(&al);
}

const struct engine engine_iterative = {
	.name = "iterative",
	.probe = probe,
	.run = run,
};
