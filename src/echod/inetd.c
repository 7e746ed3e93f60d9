/*
 * inetd.c - echod --inetd: one connection, or one UDP socket, on standard input.
 *
 * Nothing of its own moves bytes: a stream is served by the blocking models'
 * loop (engine_serve_blocking), datagrams by the UDP workers' (udp_run), so
 * the protocol, the limits and the UDP guard are the ones echod always has.
 */
#include "inetd.h"

#include "config.h"
#include "engine.h"
#include "log.h"
#include "net.h"
#include "udp.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int inetd_check_options(const struct config *cfg, char *why, size_t whylen)
{
	const char *clash = cfg->listen.n			? "--listen"
			    : cfg->udp				? "--udp"
			    : cfg->workers			? "--workers"
			    : strcmp(cfg->model, "auto")	? "--model"
			    : cfg->max_conns			? "--max-conns"
			    : strcmp(cfg->cpu_affinity, "auto") ? "--cpu-affinity"
			    : cfg->busy_poll			? "--busy-poll"
								: NULL;

	if (!clash)
		return 0;
	snprintf(why, whylen, "cannot use %s with --inetd (the socket is on standard input)",
		 clash);
	return -EINVAL;
}

void inetd_keep_logs_off_the_socket(void)
{
	struct stat in, err;
	int null;

	if (fstat(STDIN_FILENO, &in) < 0 || fstat(STDERR_FILENO, &err) < 0)
		return;
	/* A terminal is both too when typed by hand: there the error must show. */
	if (!S_ISSOCK(in.st_mode) || in.st_dev != err.st_dev || in.st_ino != err.st_ino)
		return;
	null = open("/dev/null", O_WRONLY | O_CLOEXEC);
	if (null < 0)
		return;
	dup2(null, STDERR_FILENO); /* dup2 clears close-on-exec on the copy */
	close(null);
}

/* The connection on standard input, as if accepted: the blocking loop serves it. */
static int serve_stream(struct server *srv)
{
	struct metrics_worker *m = &srv->metrics.w[0];
	int rc = net_set_nonblock(STDIN_FILENO, true);

	/* A blocking send(2) would sleep through --idle-timeout and --grace. */
	if (rc < 0) {
		log_error("--inetd: standard input: %s", strerror(-rc));
		return 1;
	}
	metrics_add(m, METRICS_ACCEPTED, 1);
	engine_serve_blocking(srv, STDIN_FILENO, m); /* closes it */
	return 0;
}

/* The UDP socket on standard input, answered until idle. */
static int serve_dgram(struct server *srv)
{
	long idle = srv->cfg->idle_timeout_ms ? srv->cfg->idle_timeout_ms : INETD_UDP_IDLE_MS;
	char why[NET_ERRLEN];
	int fd = STDIN_FILENO, rc;
	struct udp *u;

	rc = udp_adopt(srv, &fd, 1, &u, why, sizeof(why));
	if (rc < 0) {
		log_error("--inetd: %s", why);
		return 1;
	}
	rc = udp_run(u, (int)idle);
	if (rc < 0)
		log_error("--inetd: udp: %s", strerror(-rc));
	log_debug("--inetd: no datagram for %ld ms or a stop: exiting", idle);
	udp_stop(u);
	return rc < 0 ? 1 : 0;
}

/* Why the socket on standard input cannot be served, or NULL. */
static const char *unservable(int type, int family, int listening)
{
	if (family != AF_INET && family != AF_INET6 && family != AF_UNIX)
		return "is not an IPv4, IPv6 or unix socket";
	if (type == SOCK_DGRAM && family == AF_UNIX)
		return "is a unix datagram socket: echod answers UDP only";
	if (type != SOCK_STREAM && type != SOCK_DGRAM)
		return "is neither a stream nor a datagram socket";
	if (listening)
		return "is a listening socket, not a connection: inetd's \"wait\" mode for TCP is "
		       "not supported; under systemd with Accept=no, run echod without --inetd";
	return NULL;
}

int inetd_serve(struct server *srv)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(int), slen = sizeof(ss);
	int type, listening = 0;
	const char *bad;

	if (getsockopt(STDIN_FILENO, SOL_SOCKET, SO_TYPE, &type, &len) < 0 ||
	    getsockname(STDIN_FILENO, (struct sockaddr *)&ss, &slen) < 0) {
		log_error("--inetd: standard input is not a socket: %s", strerror(errno));
		return 1;
	}
	len = sizeof(listening);
	if (type == SOCK_STREAM)
		getsockopt(STDIN_FILENO, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len);
	bad = unservable(type, ss.ss_family, listening);
	if (bad) {
		log_error("--inetd: standard input %s", bad);
		return 1;
	}
	return type == SOCK_STREAM ? serve_stream(srv) : serve_dgram(srv);
}
