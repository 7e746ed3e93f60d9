/*
 * echod.c - the echo server: parse, bind, drop privileges, confine, run an
 * engine.
 *
 * Signals are handled by one thread with sigwait(2) rather than in a
 * handler: the first SIGTERM/SIGINT writes to the stop pipe every engine
 * watches and shuts the listeners, the second one kills the process at once.
 */
#include "activation.h"
#include "busy_poll.h"
#include "config.h"
#include "engine.h"
#include "inetd.h"
#include "locality.h"
#include "log.h"
#include "metrics_http.h"
#include "net.h"
#include "privs.h"
#include "sandbox.h"
#include "udp.h"
#include "version.h"

#include <dirent.h>
#include <err.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#define CAPACITY_SCAN_FDS 1024 /* without /proc: echod's own descriptors are the lowest */

struct stopper {
	sigset_t set;
	int stop_wr; /* write end of the stop pipe */
	long grace_ms;
	const struct server *srv;
	pthread_mutex_t lock; /* guards listening against main() closing them */
	bool listening;	      /* srv->listeners is open and complete */
};

/*
 * Stops accepting at once: a stream listener shut for reading refuses new
 * connections (and resets those still in its backlog), while the engine
 * serves the open ones through the grace period.  Runs after the stop pipe
 * is written, so an engine that sees accept(2) fail with EINVAL can tell a
 * stop from a fault with server_stop_requested().
 */
static void stop_listening(struct stopper *st)
{
	pthread_mutex_lock(&st->lock);
	for (int i = 0; st->listening && i < st->srv->nlisteners; i++)
		if (st->srv->listeners[i].type == SOCK_STREAM)
			shutdown(st->srv->listeners[i].fd, SHUT_RD);
	pthread_mutex_unlock(&st->lock);
}

/* Marks the listeners open (or about to close) for stop_listening(). */
static void mark_listening(struct stopper *st, bool on)
{
	pthread_mutex_lock(&st->lock);
	st->listening = on;
	pthread_mutex_unlock(&st->lock);
}

static void *signal_main(void *arg)
{
	struct stopper *st = arg;
	int sig;

	if (sigwait(&st->set, &sig) != 0)
		return NULL;
	log_info("%s: stopping; open connections have %.1f s to finish",
		 sig == SIGTERM ? "SIGTERM" : "SIGINT", (double)st->grace_ms / 1000.0);
	notify_stopping();
	if (write(st->stop_wr, "", 1) < 0)
		_exit(1);
	stop_listening(st);
	if (sigwait(&st->set, &sig) != 0)
		return NULL;
	/* The second signal: die of it, as if it had never been caught. */
	signal(sig, SIG_DFL);
	pthread_sigmask(SIG_UNBLOCK, &st->set, NULL);
	raise(sig);
	return NULL;
}

/*
 * Blocks SIGTERM and SIGINT in every thread (main's mask is inherited) and
 * opens the stop pipe.  Returns its read end.  The thread that waits for the
 * signals starts later, in the sandbox; a signal sent before stays pending.
 */
static int block_signals(struct stopper *st, const struct server *srv)
{
	int p[2];

	st->srv = srv;
	st->grace_ms = srv->cfg->grace_ms;
	st->listening = false;
	pthread_mutex_init(&st->lock, NULL);
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&st->set);
	sigaddset(&st->set, SIGTERM);
	sigaddset(&st->set, SIGINT);
	pthread_sigmask(SIG_BLOCK, &st->set, NULL);
	if (pipe2(p, O_CLOEXEC) < 0)
		err(1, "pipe");
	st->stop_wr = p[1];
	return p[0];
}

static void start_signal_thread(struct stopper *st)
{
	pthread_t tid;
	int err = pthread_create(&tid, NULL, signal_main, st);

	if (err)
		errx(1, "cannot start the signal thread: %s", strerror(err));
	pthread_detach(tid);
}

static void add_listener(struct server *srv, const struct net_addr *a, int fd)
{
	struct listener *l = &srv->listeners[srv->nlisteners++];
	char name[NET_NAMELEN];

	l->fd = fd;
	l->type = SOCK_STREAM;
	l->is_unix = a->is_unix;
	net_format_local(l->fd, name, sizeof(name));
	snprintf(l->name, sizeof(l->name), "%s %s", a->is_unix ? "unix" : "tcp", name);
	if (a->is_unix)
		snprintf(l->path, sizeof(l->path), "%s", a->path);
}

/*
 * Turns the listener fd of address a into one listener per worker, steered
 * to the workers' CPUs (locality.h); exits 1 when they cannot be bound.
 */
static void add_worker_listeners(struct server *srv, struct locality *loc, const struct net_addr *a,
				 int fd, int backlog)
{
	char why[NET_ERRLEN];
	int fds[CPUS_MAX];

	if (net_listen_group(fd, backlog, fds, srv->workers, why, sizeof(why)) < 0)
		errx(1, "%s", why);
	locality_note(loc, locality_steer(fds, srv->workers, &loc->cpus, why, sizeof(why)), why);
	for (int w = 0; w < srv->workers; w++) {
		add_listener(srv, a, fds[w]);
		srv->listeners[srv->nlisteners - 1].per_worker = true;
		srv->listeners[srv->nlisteners - 1].worker = w;
	}
}

static void add_listeners(struct server *srv, struct locality *loc, const struct net_addr *a,
			  int backlog)
{
	char why[NET_ERRLEN];
	int fds[CONFIG_MAX_LISTEN], n;

	n = net_listen(a, SOCK_STREAM, backlog, fds, CONFIG_MAX_LISTEN, why, sizeof(why));
	if (n < 0)
		errx(1, "%s", why);
	for (int i = 0; i < n; i++) {
		/* A unix socket has no reuseport group: its one listener stays shared. */
		if (loc->per_worker && !a->is_unix)
			add_worker_listeners(srv, loc, a, fds[i], backlog);
		else
			add_listener(srv, a, fds[i]);
	}
}

/*
 * With --user, the socket files become that user's before the drop; they
 * were bound as root, with root's ownership, which would leave the user's
 * own clients "Permission denied".  Exits 1 when one cannot be given.
 */
static void give_unix_sockets(const struct server *srv, const struct privs *privs)
{
	char why[NET_ERRLEN];

	for (int i = 0; i < srv->nlisteners; i++)
		if (srv->listeners[i].is_unix &&
		    privs_give_path(privs, srv->listeners[i].path, why, sizeof(why)) < 0)
			errx(1, "%s", why);
}

/*
 * Binds every -l address, or the default, and gives unix sockets to the
 * --user (privs, or NULL) before they are announced; exits 1 naming the
 * address that failed.
 */
static void open_listeners(struct server *srv, struct locality *loc, const struct config *cfg,
			   const struct privs *privs)
{
	struct net_addr dflt = {.port = NET_DEFAULT_PORT};
	size_t naddrs = (size_t)(cfg->listen.n ? cfg->listen.n : 1);
	size_t copies = loc->per_worker ? (size_t)srv->workers : 1;

	/* Each address gives at most two sockets (IPv4 and IPv6), or its resolved few. */
	srv->listeners = calloc(naddrs * CONFIG_MAX_LISTEN * copies, sizeof(*srv->listeners));
	if (!srv->listeners)
		err(1, "listeners");
	if (!cfg->listen.n)
		add_listeners(srv, loc, &dflt, (int)cfg->backlog);
	for (int i = 0; i < cfg->listen.n; i++)
		add_listeners(srv, loc, &cfg->listen.addr[i], (int)cfg->backlog);
	if (privs)
		give_unix_sockets(srv, privs);
	/* One line per address, also where each worker has a listener of its own. */
	for (int i = 0; i < srv->nlisteners; i++)
		if (listener_is_first(&srv->listeners[i]))
			log_always("listening on %s", srv->listeners[i].name);
}

/*
 * Takes the sockets systemd passed, if any (activation.h): they replace
 * --listen and --udp, which are ignored with a line saying so.  Returns how
 * many were taken; exits 1 when one cannot be served.
 */
static int take_activated(struct server *srv, struct activated_udp *udp)
{
	char why[ACTIVATION_ERRLEN];
	int n = activation_take(srv, udp, why, sizeof(why));

	if (n < 0)
		errx(1, "%s", why);
	return n;
}

/*
 * The UDP sockets systemd passed, or with --udp UDP twins of the IP
 * listeners; exits 1 naming the address that failed.
 */
static struct udp *open_udp(struct server *srv, const struct activated_udp *act)
{
	char why[NET_ERRLEN];
	struct udp *u = NULL;

	if (act && act->n && udp_adopt(srv, act->fds, act->n, &u, why, sizeof(why)) < 0)
		errx(1, "%s", why);
	if (!act && srv->cfg->udp && udp_open(srv, &u, why, sizeof(why)) < 0)
		errx(1, "%s", why);
	return u;
}

static void start_udp(struct udp *u)
{
	int rc = u ? udp_start(u) : 0;

	if (rc < 0)
		errx(1, "udp: cannot start the workers: %s", strerror(-rc));
}

static void close_listeners(struct server *srv)
{
	for (int i = 0; i < srv->nlisteners; i++) {
		const struct listener *l = &srv->listeners[i];

		close(l->fd);
		/* After --user, a directory the user may not write keeps the file. */
		if (l->is_unix && l->path[0] && unlink(l->path) < 0 && errno != ENOENT)
			log_warn("cannot remove the socket file %s: %s; the next start replaces it",
				 l->path, strerror(errno));
	}
	free(srv->listeners);
}

/*
 * Opens /dev/null on whichever of descriptors 0, 1 and 2 is closed, as a
 * supervisor may leave them.  Otherwise the first pipe or socket echod opens
 * would take their number: the stop pipe on 1 and 2, say, and the first log
 * line would read as a stop request.  Exits 1 (silently: there may be
 * nowhere to say it) when /dev/null cannot be opened.
 */
static void open_standard_fds(void)
{
	for (int fd = STDIN_FILENO; fd <= STDERR_FILENO; fd++) {
		int got;

		if (fcntl(fd, F_GETFD) >= 0 || errno != EBADF)
			continue;
		got = open("/dev/null", fd == STDIN_FILENO ? O_RDONLY : O_WRONLY);
		if (got != fd) /* the lowest free number: fd, or a failure */
			_exit(1);
	}
}

static void parse_args(struct config *cfg, int argc, char **argv)
{
	char why[CONFIG_ERRLEN];

	enum opts_result res = config_parse(cfg, argc, argv, why, sizeof(why));

	if (res == OPTS_OK && cfg->inetd && inetd_check_options(cfg, why, sizeof(why)) < 0)
		res = OPTS_ERROR;
	switch (res) {
	case OPTS_ERROR:
		errx(2, "%s (see --help)", why);
	case OPTS_HELP:
		config_usage(stdout);
		exit(0);
	case OPTS_VERSION:
		printf("echod %s\n", ECHOD_VERSION);
		exit(0);
	case OPTS_OK:
		break;
	}
	log_setup("echod",
		  cfg->quiet	 ? LOGL_ERROR
		  : cfg->verbose ? LOGL_DEBUG
				 : LOGL_INFO,
		  !strcmp(cfg->log_format, "json"));
}

/*
 * The engine to run; why gets what "auto" passed over ("" when it took its
 * first choice).  That note waits for log_engine(): printed now, it would
 * make a start failure (an address in use) two lines instead of one.
 */
static const struct engine *choose_engine(const struct config *cfg, char *why, size_t whylen)
{
	const struct engine *e = engine_pick(cfg->model, why, whylen);

	if (!e)
		errx(1, "--model %s: %s", cfg->model, why);
	return e;
}

/*
 * Confines the process for serving (sandbox.h) unless --no-sandbox; exits 1
 * if it cannot.  Runs before any thread starts: Landlock covers only the
 * threads started after it.
 */
static void confine(const struct server *srv, const struct engine *e)
{
	char why[SANDBOX_ERRLEN];

	if (srv->cfg->no_sandbox)
		log_debug("sandbox: off (--no-sandbox)");
	else if (sandbox_apply(srv, e->name, why, sizeof(why)) < 0)
		errx(1, "%s (--no-sandbox runs without it)", why);
}

/*
 * --workers, else one per CPU of --cpu-affinity LIST, else one per CPU
 * echod may run on (taskset and cpusets shrink that set, not the machine).
 */
static int worker_count(const struct config *cfg, const struct engine *e,
			const struct cpu_list *allowed)
{
	if (!e->has_workers)
		return 1;
	if (cfg->workers)
		return (int)cfg->workers;
	return cfg->cpu_list.n ? cfg->cpu_list.n : allowed->n;
}

/* Decides the pinning before the listeners are opened: they depend on it. */
static void plan_locality(struct locality *loc, struct server *srv, const struct engine *e)
{
	struct cpu_list allowed;

	cpus_allowed(&allowed);
	srv->workers = worker_count(srv->cfg, e, &allowed);
	locality_plan(loc, srv->cfg->cpu_affinity, &srv->cfg->cpu_list, srv->workers,
		      e->has_workers, &allowed);
	srv->pin = loc->pin ? &loc->cpus : NULL;
	srv->batch = e->has_workers &&
		     locality_batch(srv->cfg->worker_sched, loc->pin, srv->cfg->busy_poll);
}

static void log_locality(const struct locality *loc, const struct server *srv,
			 const struct engine *e)
{
	char line[LOCALITY_WHYLEN + 160];

	if (!e->has_workers)
		return;
	locality_describe(loc, line, sizeof(line));
	log_info("%s%s", line, srv->batch ? "; workers SCHED_BATCH (--worker-sched)" : "");
}

/* Once every listener is bound: the note on what auto passed over, then the engine. */
static void log_engine(const struct server *srv, const struct engine *e, const char *passed_over)
{
	if (passed_over[0])
		log_info("%s; using %s", passed_over, e->name);
	if (e->has_workers)
		log_info("engine %s, %d worker%s%s", e->name, srv->workers,
			 srv->workers == 1 ? "" : "s",
			 srv->cfg->busy_poll ? ", busy-polling: each keeps a CPU busy" : "");
	else if (!strcmp(e->name, "threads"))
		log_info("engine threads, one thread per connection");
	else
		log_info("engine %s, 1 worker", e->name);
}

/*
 * Raises the soft RLIMIT_NOFILE to the hard limit: every connection costs a
 * descriptor, and the soft limit is often 1024 while the hard one is far
 * higher.  A failure (a limit the process may not change) is one warning.
 */
static void raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur == rl.rlim_max)
		return;
	rl.rlim_cur = rl.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
		log_warn("cannot raise the descriptor limit to its hard limit %llu: %s",
			 (unsigned long long)rl.rlim_max, strerror(errno));
}

/* Descriptors open now: /proc/self/fd on Linux, else a scan of the low numbers. */
static long count_open_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *de;
	long n = 0;

	if (!d) {
		for (int fd = 0; fd < CAPACITY_SCAN_FDS; fd++)
			n += fcntl(fd, F_GETFD) >= 0;
		return n;
	}
	while ((de = readdir(d)))
		n += de->d_name[0] != '.';
	closedir(d);
	return n - 1; /* the directory's own descriptor */
}

/*
 * Descriptors the engine opens for itself when it starts, as this version
 * does: an epoll or io_uring instance and a wake-up eventfd per worker; the
 * threads model's wake-up pipe.  Plus the --metrics clients served at once.
 */
static long engine_fds(const struct server *srv, const struct engine *e)
{
	long n = e->has_workers ? 2L * srv->workers : !strcmp(e->name, "threads") ? 2 : 0;

	return n + (srv->cfg->metrics.n ? METRICS_HTTP_MAX_CONNS : 0);
}

/*
 * One line saying how many connections this process can hold at once: the
 * descriptor limit less what echod itself holds, capped by --max-conns.
 * Past the descriptors, accepting pauses (ENGINE_ACCEPT_PAUSE_MS) and new
 * connections wait in the backlog.  Memory, and for the threads model the
 * thread limits, may bind earlier: the line says what the descriptors allow.
 */
static void log_capacity(const struct server *srv, const struct engine *e)
{
	struct rlimit rl;
	long own = count_open_fds() + engine_fds(srv, e), fds, conns;
	long max = srv->cfg->max_conns;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return;
	fds = rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > LONG_MAX ? LONG_MAX : (long)rl.rlim_cur;
	conns = fds > own ? fds - own : 0;
	struct log_field f[] = {
		{"connections", NULL, (unsigned long long)(max && max < conns ? max : conns)},
		{"bound_by", max && max < conns ? "max-conns" : "descriptors", 0},
		{"nofile", NULL, (unsigned long long)fds},
		{"echod_fds", NULL, (unsigned long long)own},
		{"per_connection", !strcmp(e->name, "threads") ? "descriptor+thread" : "descriptor",
		 0},
	};
	log_fields(LOGL_INFO, "capacity", f, (int)(sizeof(f) / sizeof(f[0])));
	if (max > conns)
		log_warn("--max-conns %ld is more than the %ld connections the descriptor limit "
			 "(%ld) leaves: past them accepting pauses",
			 max, conns, fds);
}

/*
 * --inetd: the socket on standard input instead of listeners and an engine.
 * Returns the exit status.
 */
static int run_inetd(struct config *cfg, const struct privs *privs)
{
	struct server srv = {.cfg = cfg, .workers = 1};
	char why[NET_ERRLEN];
	struct stopper st;
	int rc;

	atomic_init(&srv.nconns, 0);
	srv.serves_udp = true; /* standard input may be a datagram socket */
	srv.stop_fd = block_signals(&st, &srv);
	if (privs && privs_drop(privs, why, sizeof(why)) < 0)
		errx(1, "%s", why);
	if (metrics_init(&srv.metrics, 1) < 0)
		errx(1, "out of memory");
	confine(&srv, &engine_iterative);
	start_signal_thread(&st);
	rc = inetd_serve(&srv);
	metrics_free(&srv.metrics);
	return rc;
}

/* Opens the socket to systemd (NOTIFY_SOCKET); a failure is only worth a warning. */
static void open_notify(void)
{
	char why[ACTIVATION_ERRLEN];

	if (notify_open(why, sizeof(why)) < 0)
		log_warn("cannot tell systemd when ready: %s", why);
}

int main(int argc, char **argv)
{
	static struct locality loc; /* big (a CPU list), and srv.pin points into it */
	struct activated_udp act = {0};
	struct server srv = {0};
	struct privs privs;
	struct stopper st;
	struct config cfg;
	const struct engine *e;
	struct udp *udp;
	struct metrics_http *mh;
	char why[NET_ERRLEN];
	bool activated;
	char passed_over[ENGINE_WHYLEN];
	int rc;

	open_standard_fds();
	parse_args(&cfg, argc, argv);
	raise_nofile();
	if (cfg.inetd)
		inetd_keep_logs_off_the_socket();
	/* An unknown user is a start failure (1), as echod(1) says, not a usage error. */
	if (cfg.user && privs_lookup(cfg.user, &privs, why, sizeof(why)) < 0)
		errx(1, "%s", why);
	if (cfg.inetd)
		return run_inetd(&cfg, cfg.user ? &privs : NULL);
	open_notify();
	e = choose_engine(&cfg, passed_over, sizeof(passed_over));
	srv.cfg = &cfg;
	plan_locality(&loc, &srv, e);
	atomic_init(&srv.nconns, 0);
	srv.stop_fd = block_signals(&st, &srv);
	/* First: a --metrics address in use fails the start before any
	 * "listening on" line tells a script echod is up. */
	mh = metrics_http_open(&srv, e->name);
	activated = take_activated(&srv, &act) > 0;
	if (!activated)
		open_listeners(&srv, &loc, &cfg, cfg.user ? &privs : NULL);
	else if (loc.per_worker)
		locality_no_steering(&loc, "systemd passed one listening socket per address, "
					   "shared by the workers");
	udp = open_udp(&srv, activated ? &act : NULL);
	srv.serves_udp = udp != NULL;
	metrics_http_announce(mh);
	mark_listening(&st, true);
	if (cfg.busy_poll)
		busy_poll_listeners(&srv); /* while echod may still hold CAP_NET_ADMIN */
	if (cfg.user && privs_drop(&privs, why, sizeof(why)) < 0)
		errx(1, "%s", why);
	if (metrics_init(&srv.metrics, srv.workers) < 0)
		errx(1, "out of memory");
	/* Before the engine line, which tests and scripts take as the last start-up line. */
	log_locality(&loc, &srv, e);
	log_capacity(&srv, e);
	log_engine(&srv, e, passed_over);
	confine(&srv, e);
	start_signal_thread(&st);
	start_udp(udp);
	metrics_http_start(mh);
	notify_ready();
	rc = e->run(&srv);
	udp_stop(udp);
	if (rc < 0)
		log_error("engine %s: %s", e->name, strerror(-rc));
	log_debug("served %lu connections", metrics_sum(&srv.metrics, METRICS_ACCEPTED));
	mark_listening(&st, false);
	close_listeners(&srv);
	metrics_http_stop(mh);
	metrics_free(&srv.metrics);
	return rc < 0 ? 1 : 0;
}
