/*
 * activation.c - systemd socket activation and sd_notify, without libsystemd.
 *
 * See activation.h for the protocols and why they are written out here.
 */
#include "activation.h"

#include "config.h"
#include "engine.h"
#include "log.h"
#include "net.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- Socket activation ---- */

/* Parses a whole decimal number in [min, max]; false if s is not one. */
static bool parse_long(const char *s, long min, long max, long *out)
{
	char *end;
	long v;

	if (!s || !*s)
		return false;
	errno = 0;
	v = strtol(s, &end, 10);
	if (*end || errno || v < min || v > max)
		return false;
	*out = v;
	return true;
}

int activation_count(const char *pid, const char *fds, pid_t self, char *why, size_t whylen)
{
	long p, n;

	/* As sd_listen_fds(): without both, nothing was passed to us. */
	if (!fds || !pid)
		return 0;
	if (!parse_long(pid, 1, LONG_MAX, &p)) {
		snprintf(why, whylen, "LISTEN_PID=%s: not a process id", pid);
		return -EINVAL;
	}
	/* sd_listen_fds() ignores them too: they were meant for a parent. */
	if (p != (long)self)
		return 0;
	if (!parse_long(fds, 0, LONG_MAX, &n)) {
		snprintf(why, whylen, "LISTEN_FDS=%s: not a number of descriptors", fds);
		return -EINVAL;
	}
	if (n > ACTIVATION_MAX_FDS) {
		snprintf(why, whylen, "LISTEN_FDS=%ld: more than the %d sockets echod takes", n,
			 ACTIVATION_MAX_FDS);
		return -EINVAL;
	}
	return (int)n;
}

void activation_fd_name(const char *names, int i, char *buf, size_t buflen)
{
	const char *p = names;

	buf[0] = '\0';
	for (; p && i > 0; i--) {
		p = strchr(p, ':');
		p = p ? p + 1 : NULL;
	}
	if (p)
		snprintf(buf, buflen, "%.*s", (int)strcspn(p, ":"), p);
}

/* What a passed descriptor turned out to be. */
struct passed {
	int fd;
	int type;		    /* SOCK_STREAM or SOCK_DGRAM */
	int family;		    /* AF_INET, AF_INET6 or AF_UNIX */
	char name[NET_NAMELEN + 8]; /* "tcp 127.0.0.1:7127", as logged */
};

/* "descriptor 3" or "descriptor 3 (echod.socket)", for error lines. */
static void describe_fd(int fd, const char *names, char *buf, size_t buflen)
{
	char name[NAME_MAX + 1];

	activation_fd_name(names, fd - ACTIVATION_FDS_START, name, sizeof(name));
	snprintf(buf, buflen, name[0] ? "descriptor %d (%s)" : "descriptor %d%s", fd, name);
}

/* The local address of p->fd into p->family and p->name.  Returns 0 or -errno. */
static int name_socket(struct passed *p)
{
	struct sockaddr_storage ss;
	struct sockaddr_un *sun = (struct sockaddr_un *)&ss;
	socklen_t len = sizeof(ss);
	char addr[NET_NAMELEN];
	const char *kind;

	if (getsockname(p->fd, (struct sockaddr *)&ss, &len) < 0)
		return -errno;
	p->family = ss.ss_family;
	if (p->family == AF_UNIX && len > offsetof(struct sockaddr_un, sun_path) &&
	    sun->sun_path[0] == '\0') /* abstract: "@name", as ss(8) shows it */
		snprintf(addr, sizeof(addr), "@%.*s",
			 (int)(len - offsetof(struct sockaddr_un, sun_path) - 1),
			 sun->sun_path + 1);
	else
		net_format_sockaddr((struct sockaddr *)&ss, len, addr, sizeof(addr));
	kind = p->family == AF_UNIX ? "unix" : p->type == SOCK_DGRAM ? "udp" : "tcp";
	snprintf(p->name, sizeof(p->name), "%s %s", kind, addr);
	return 0;
}

/* Why p cannot be served, or NULL when it can. */
static const char *unservable(const struct passed *p, int listening)
{
	if (p->family != AF_INET && p->family != AF_INET6 && p->family != AF_UNIX)
		return "is not an IPv4, IPv6 or unix socket";
	if (p->type == SOCK_DGRAM)
		return p->family == AF_UNIX ? "is a unix datagram socket: echod answers UDP only"
					    : NULL;
	if (p->type != SOCK_STREAM)
		return "is neither a stream nor a datagram socket";
	if (!listening)
		return "is a connected stream socket, not a listening one "
		       "(with Accept=yes, run echod --inetd)";
	return NULL;
}

/* Checks one passed descriptor and prepares it for serving.  0 or -EINVAL. */
static int check_fd(struct passed *p, const char *names, char *why, size_t whylen)
{
	char what[NAME_MAX + 32];
	int listening = 0, rc = 0;
	socklen_t len = sizeof(p->type);
	const char *bad = NULL;

	describe_fd(p->fd, names, what, sizeof(what));
	if (getsockopt(p->fd, SOL_SOCKET, SO_TYPE, &p->type, &len) < 0)
		rc = -errno;
	len = sizeof(listening);
	if (rc == 0 && p->type == SOCK_STREAM &&
	    getsockopt(p->fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) < 0)
		rc = -errno;
	if (rc == 0)
		rc = name_socket(p);
	if (rc < 0) {
		snprintf(why, whylen, "LISTEN_FDS: %s: %s", what,
			 rc == -EBADF	   ? "not open"
			 : rc == -ENOTSOCK ? "not a socket"
					   : strerror(-rc));
		return -EINVAL;
	}
	bad = unservable(p, listening);
	if (bad) {
		snprintf(why, whylen, "LISTEN_FDS: %s %s", what, bad);
		return -EINVAL;
	}
	/* As sd_listen_fds() does; the engines expect non-blocking listeners. */
	if (fcntl(p->fd, F_SETFD, FD_CLOEXEC) < 0 || net_set_nonblock(p->fd, true) < 0) {
		snprintf(why, whylen, "LISTEN_FDS: %s: %s", what, strerror(errno));
		return -EINVAL;
	}
	return 0;
}

/* Hands the checked sockets to the server and the UDP workers, in order. */
static int hand_over(struct server *srv, struct activated_udp *udp, const struct passed *p, int n)
{
	srv->listeners = calloc((size_t)n, sizeof(*srv->listeners));
	if (!srv->listeners)
		return -ENOMEM;
	srv->nlisteners = 0;
	udp->n = 0;
	/* Before the listening lines: the engine's line follows them, as usual. */
	if (srv->cfg->listen.n || srv->cfg->udp)
		log_warn("%s ignored: serving the %d socket%s systemd passed (LISTEN_FDS)",
			 srv->cfg->listen.n ? "--listen" : "--udp", n, n == 1 ? "" : "s");
	for (int i = 0; i < n; i++) {
		if (p[i].type == SOCK_DGRAM) {
			udp->fds[udp->n++] = p[i].fd;
		} else {
			struct listener *l = &srv->listeners[srv->nlisteners++];

			/* path stays empty: the socket file is systemd's, not ours to remove. */
			*l = (struct listener){.fd = p[i].fd,
					       .type = SOCK_STREAM,
					       .is_unix = p[i].family == AF_UNIX};
			snprintf(l->name, sizeof(l->name), "%s", p[i].name);
		}
		log_always("listening on %s", p[i].name);
	}
	return 0;
}

int activation_take(struct server *srv, struct activated_udp *udp, char *why, size_t whylen)
{
	const char *names = getenv("LISTEN_FDNAMES");
	struct passed *p;
	int n, rc = 0;

	n = activation_count(getenv("LISTEN_PID"), getenv("LISTEN_FDS"), getpid(), why, whylen);
	if (n > 0) {
		p = calloc((size_t)n, sizeof(*p));
		if (!p) {
			snprintf(why, whylen, "LISTEN_FDS: out of memory");
			return -ENOMEM;
		}
		for (int i = 0; rc == 0 && i < n; i++) {
			p[i].fd = ACTIVATION_FDS_START + i;
			rc = check_fd(&p[i], names, why, whylen);
		}
		if (rc == 0 && hand_over(srv, udp, p, n) < 0) {
			snprintf(why, whylen, "LISTEN_FDS: out of memory");
			rc = -ENOMEM;
		}
		free(p);
	}
	/* After names is used: unsetenv may free it. */
	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDS");
	unsetenv("LISTEN_FDNAMES");
	return rc < 0 ? rc : n;
}

/* ---- sd_notify ---- */

/*
 * The connected socket to systemd, or -1.  One per process, like the
 * NOTIFY_SOCKET variable it comes from; atomic because the signal thread
 * reads it.
 */
static atomic_int notify_fd = -1;

int notify_address(const char *env, struct sockaddr_un *sa, socklen_t *len)
{
	size_t n = env ? strlen(env) : 0;

	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	if (n < 2 || (env[0] != '/' && env[0] != '@'))
		return -EINVAL;
	if (n > sizeof(sa->sun_path) || (env[0] == '/' && n == sizeof(sa->sun_path)))
		return -ENAMETOOLONG;
	memcpy(sa->sun_path, env, n);
	if (env[0] == '@') /* the abstract namespace: a leading NUL, no terminator */
		sa->sun_path[0] = '\0';
	*len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + (env[0] == '/'));
	return 0;
}

int notify_open(char *why, size_t whylen)
{
	const char *env = getenv("NOTIFY_SOCKET");
	struct sockaddr_un sa;
	socklen_t len;
	int fd, rc;

	if (!env)
		return 0;
	rc = notify_address(env, &sa, &len);
	if (rc < 0) {
		snprintf(why, whylen, "NOTIFY_SOCKET=%s: %s", env, strerror(-rc));
		goto out;
	}
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, len) < 0) {
		rc = -errno;
		snprintf(why, whylen, "NOTIFY_SOCKET=%s: %s", env, strerror(errno));
		if (fd >= 0)
			close(fd);
		goto out;
	}
	atomic_store(&notify_fd, fd);
out:
	unsetenv("NOTIFY_SOCKET");
	return rc;
}

/* Sends one state line; says at -v when systemd could not be told. */
static void notify_send(const char *state)
{
	int fd = atomic_load(&notify_fd);

	if (fd < 0)
		return;
	/* send(2) is sendto(2) in the kernel: the one call this adds after start-up. */
	if (send(fd, state, strlen(state), MSG_NOSIGNAL) < 0)
		log_debug("cannot tell systemd %s: %s", state, strerror(errno));
}

void notify_ready(void)
{
	notify_send("READY=1");
}

void notify_stopping(void)
{
	notify_send("STOPPING=1");
}
