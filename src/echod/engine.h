/*
 * engine.h - one way of serving connections; one file per model.
 *
 * An engine takes the bound listeners in struct server and serves the echo
 * protocol (conn.h) on every connection they accept until srv->stop_fd
 * becomes readable.  Then it stops accepting at once, lets open connections
 * finish for up to cfg->grace_ms, closes what is left and returns.
 *
 * Shutdown arrives as data rather than as a method: stop_fd is the read end
 * of a pipe that main() writes to on SIGTERM/SIGINT and never drains, so it
 * stays readable for every thread that watches it.
 */
#ifndef ECHOD_ENGINE_H
#define ECHOD_ENGINE_H

#include "config.h"
#include "metrics.h"
#include "net.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#define ENGINE_WHYLEN 256

struct listener {
	int fd;
	int type; /* SOCK_STREAM or SOCK_DGRAM */
	bool is_unix;
	char name[NET_NAMELEN + 8];			 /* "tcp 127.0.0.1:7127", as logged */
	char path[sizeof(((struct net_addr *)0)->path)]; /* unix: removed at exit; "": systemd's */
	bool per_worker; /* one of an address's per-worker listeners (locality.h) */
	int worker;	 /* per_worker: the only worker that accepts from it */
};

/* True when worker i accepts from l: a shared listener, or its own. */
static inline bool listener_serves(const struct listener *l, int worker)
{
	return !l->per_worker || l->worker == worker;
}

/* True for the listener that stands for its address (logs, UDP twins). */
static inline bool listener_is_first(const struct listener *l)
{
	return !l->per_worker || l->worker == 0;
}

struct server {
	const struct config *cfg;
	struct listener *listeners;
	int nlisteners;
	int stop_fd;		    /* readable once a stop was asked for */
	int workers;		    /* threads the engine runs (epoll, uring) */
	const struct cpu_list *pin; /* NULL, or worker i runs on pin->cpu[i] only */
	bool batch;		    /* workers run SCHED_BATCH (--worker-sched) */
	atomic_long nconns;	    /* connections being served, for --max-conns */
	bool serves_udp;	    /* UDP workers run: --udp, systemd's UDP sockets, --inetd */
	struct metrics metrics;
};

struct engine {
	const char *name; /* as given to --model */
	bool has_workers; /* runs srv->workers event loops (else see its header) */
	/* 0 if this engine can run here; else -errno and a reason in why. */
	int (*probe)(char *why, size_t whylen);
	/* Serves until srv->stop_fd is readable; 0 after a clean drain, else -errno. */
	int (*run)(struct server *srv);
};

extern const struct engine engine_iterative;
extern const struct engine engine_threads;
extern const struct engine engine_epoll;
extern const struct engine engine_uring;

/*
 * Resolves --model.  "auto" takes the first usable engine in order of
 * preference, and says in why which ones it passed over.  Returns NULL with
 * the reason in why when the model asked for cannot run here.
 */
const struct engine *engine_pick(const char *model, char *why, size_t whylen);

/*
 * Reserves a connection slot under --max-conns.  Returns false when every
 * slot is taken: leave the next connection in the backlog.
 */
bool server_take_slot(struct server *srv);
/* Frees a slot; returns true when the server was full until now. */
bool server_release_slot(struct server *srv);
/* True once a stop was asked for.  One poll(2): not for hot paths. */
bool server_stop_requested(const struct server *srv);
/* The conn flags for this configuration (CONN_ONCE ...). */
unsigned server_conn_flags(const struct server *srv);

/*
 * Serves one connection on fd with poll(2), read(2) and send(2) until it is
 * done, idle for too long, or cut off by a stop after the grace period.
 * Closes fd.  Used by the models that give a connection a whole thread.
 */
void engine_serve_blocking(struct server *srv, int fd, struct metrics_worker *m);

/* When accept(2) runs out of descriptors, how long to leave the backlog be. */
#define ENGINE_ACCEPT_PAUSE_MS 100

/* The blocking models' acceptor: what to do with each accepted connection. */
struct accept_loop {
	struct server *srv;
	struct metrics_worker *m;
	int wake_fd; /* -1, or readable when a --max-conns slot may have freed */
	/* Takes over fd, which holds a slot: serve it, close it, release the slot. */
	void (*serve)(struct accept_loop *al, int fd);
};

/*
 * Accepts connections from every listener with poll(2) and hands each to
 * al->serve, until a stop is asked for.  Without a free slot it leaves the
 * listeners alone until wake_fd says one freed; out of descriptors it pauses
 * for ENGINE_ACCEPT_PAUSE_MS.  Returns 0, or -errno if poll(2) fails.
 */
int engine_accept_loop(struct accept_loop *al);

/* Logs an accept(2) failure at most once a minute per kind. */
void engine_log_accept_error(int err);

#endif
