/*
 * net.c - addresses and sockets, shared by echod and echoc.
 *
 * Plain POSIX sockets plus accept4() and SOCK_NONBLOCK/SOCK_CLOEXEC (Linux,
 * the BSDs).  Host names are resolved only when the user typed one; numeric
 * addresses never cause a lookup, and peers are only ever formatted
 * numerically.
 */
#include "net.h"

#include "clock.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void set_err(char *err, size_t errlen, const char *fmt, const char *what, int errnum)
{
	if (err && errlen)
		snprintf(err, errlen, fmt, what, strerror(errnum));
}

/* Parses a decimal port 0..65535; returns 0 or -EINVAL. */
static int parse_port(const char *s, uint16_t *port)
{
	char *end;
	long v;

	if (*s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || *end || v > 65535)
		return -EINVAL;
	*port = (uint16_t)v;
	return 0;
}

static bool all_digits(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if (*s < '0' || *s > '9')
			return false;
	return true;
}

static int parse_unix(const char *path, struct net_addr *a, char *err, size_t errlen)
{
	if (!*path || strlen(path) >= sizeof(a->path)) {
		snprintf(err, errlen, "unix socket path must be 1 to %zu bytes",
			 sizeof(a->path) - 1);
		return -EINVAL;
	}
	a->is_unix = true;
	strcpy(a->path, path);
	return 0;
}

/* Splits "[v6]" or "[v6]:port"; port_at points at the port text or is NULL. */
static int split_bracketed(const char *s, struct net_addr *a, const char **port_at)
{
	const char *close = strchr(s, ']');
	size_t len;

	if (!close || (close[1] && close[1] != ':'))
		return -EINVAL;
	len = (size_t)(close - s - 1);
	if (len == 0 || len >= sizeof(a->host) || memchr(s + 1, '[', len))
		return -EINVAL;
	memcpy(a->host, s + 1, len);
	a->host[len] = '\0';
	*port_at = close[1] ? close + 2 : NULL;
	return 0;
}

/* Splits HOST:PORT, HOST, PORT or a bare IPv6 address. */
static int split_plain(const char *s, struct net_addr *a, const char **port_at)
{
	const char *colon = strchr(s, ':');
	size_t len;

	*port_at = NULL;
	if (strpbrk(s, "[]")) /* "::1]": a bracket belongs around an IPv6 address only */
		return -EINVAL;
	if (all_digits(s)) {
		*port_at = s;
		return 0;
	}
	if (colon && strchr(colon + 1, ':'))
		colon = NULL; /* bare IPv6 address, no port */
	else if (colon)
		*port_at = colon + 1;
	len = colon ? (size_t)(colon - s) : strlen(s);
	if (len >= sizeof(a->host))
		return -EINVAL;
	memcpy(a->host, s, len);
	a->host[len] = '\0';
	return 0;
}

int net_parse_addr(const char *s, uint16_t default_port, struct net_addr *a, char *err,
		   size_t errlen)
{
	const char *port_at;
	int rc;

	memset(a, 0, sizeof(*a));
	a->port = default_port;
	if (!strncmp(s, "unix:", 5))
		return parse_unix(s + 5, a, err, errlen);
	rc = s[0] == '[' ? split_bracketed(s, a, &port_at) : split_plain(s, a, &port_at);
	if (rc < 0) {
		snprintf(err, errlen, "malformed address \"%s\"", s);
		return rc;
	}
	if (port_at && parse_port(port_at, &a->port) < 0) {
		snprintf(err, errlen, "invalid port \"%s\" (0 to 65535)", port_at);
		return -EINVAL;
	}
	if (!*a->host && !port_at) {
		snprintf(err, errlen, "malformed address \"%s\"", s);
		return -EINVAL;
	}
	return 0;
}

void net_format_sockaddr(const struct sockaddr *sa, socklen_t len, char *buf, size_t buflen)
{
	char host[INET6_ADDRSTRLEN + 8], port[8];

	if (sa->sa_family == AF_UNIX) {
		const struct sockaddr_un *sun = (const struct sockaddr_un *)sa;
		size_t n = len > offsetof(struct sockaddr_un, sun_path)
				   ? len - offsetof(struct sockaddr_un, sun_path)
				   : 0;

		snprintf(buf, buflen, "%.*s", (int)strnlen(sun->sun_path, n), sun->sun_path);
		return;
	}
	if (getnameinfo(sa, len, host, sizeof(host), port, sizeof(port),
			NI_NUMERICHOST | NI_NUMERICSERV)) {
		snprintf(buf, buflen, "?");
		return;
	}
	snprintf(buf, buflen, sa->sa_family == AF_INET6 ? "[%s]:%s" : "%s:%s", host, port);
}

void net_format_local(int fd, char *buf, size_t buflen)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
		snprintf(buf, buflen, "?");
	else
		net_format_sockaddr((struct sockaddr *)&ss, len, buf, buflen);
}

void net_format_peer(int fd, char *buf, size_t buflen)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	if (getpeername(fd, (struct sockaddr *)&ss, &len) < 0)
		snprintf(buf, buflen, "?");
	else
		net_format_sockaddr((struct sockaddr *)&ss, len, buf, buflen);
}

int net_set_nonblock(int fd, bool on)
{
	int flags = fcntl(fd, F_GETFL);

	if (flags < 0)
		return -errno;
	flags = on ? flags | O_NONBLOCK : flags & ~O_NONBLOCK;
	return fcntl(fd, F_SETFL, flags) < 0 ? -errno : 0;
}

/*
 * Binds (and for streams, listens) one socket on sa, with SO_REUSEPORT when
 * reuseport.  Returns fd or -errno.
 */
static int listen_on(const struct sockaddr *sa, socklen_t salen, int type, int backlog,
		     bool reuseport, char *err, size_t errlen)
{
	char name[NET_NAMELEN];
	int fd, one = 1, rc;

	fd = socket(sa->sa_family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		rc = -errno;
		net_format_sockaddr(sa, salen, name, sizeof(name));
		set_err(err, errlen, "socket %s: %s", name, -rc);
		return rc;
	}
	if (sa->sa_family != AF_UNIX)
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0) {
		rc = -errno;
		close(fd);
		set_err(err, errlen, "%s: %s", "SO_REUSEPORT", -rc);
		return rc;
	}
	/* [::] must leave 0.0.0.0 to its own socket. */
	if (sa->sa_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(fd, sa, salen) < 0 || (type == SOCK_STREAM && listen(fd, backlog) < 0)) {
		rc = -errno;
		close(fd);
		net_format_sockaddr(sa, salen, name, sizeof(name));
		set_err(err, errlen, "bind %s: %s", name, -rc);
		return rc;
	}
	return fd;
}

static int listen_one(const struct sockaddr *sa, socklen_t salen, int type, int backlog, char *err,
		      size_t errlen)
{
	return listen_on(sa, salen, type, backlog, false, err, errlen);
}

int net_listen_group(int fd, int backlog, int *fds, int n, char *err, size_t errlen)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	int rc = getsockname(fd, (struct sockaddr *)&ss, &len) < 0 ? -errno : 0;

	if (rc < 0)
		set_err(err, errlen, "%s: %s", "getsockname", -rc);
	/* Closed first: its port must be free for the group (see net.h). */
	close(fd);
	for (int i = 0; rc == 0 && i < n; i++) {
		int got = listen_on((struct sockaddr *)&ss, len, SOCK_STREAM, backlog, true, err,
				    errlen);

		if (got < 0) {
			while (i > 0)
				close(fds[--i]);
			return got;
		}
		fds[i] = got;
	}
	return rc;
}

/*
 * True when the file at sun is not a stale socket: something accepts
 * connections on it, or it is not a socket at all (connect(2) on a regular
 * file also fails with ECONNREFUSED, and such a file is never ours to remove).
 * The connect does not block: a live listener whose backlog is full answers
 * EAGAIN at once, rather than holding start-up until it accepts.
 */
static bool unix_socket_alive(const struct sockaddr_un *sun, int type)
{
	struct stat st;
	bool alive;
	int fd;

	if (lstat(sun->sun_path, &st) < 0 || !S_ISSOCK(st.st_mode))
		return true;
	fd = socket(AF_UNIX, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return true;
	alive = connect(fd, (const struct sockaddr *)sun, sizeof(*sun)) == 0 ||
		errno != ECONNREFUSED;
	close(fd);
	return alive;
}

static int listen_unix(const struct net_addr *a, int type, int backlog, char *err, size_t errlen)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	int fd;

	strcpy(sun.sun_path, a->path);
	fd = listen_one((struct sockaddr *)&sun, sizeof(sun), type, backlog, err, errlen);
	if (fd != -EADDRINUSE || unix_socket_alive(&sun, type))
		return fd;
	/* A socket file left behind by a process that is gone. */
	unlink(sun.sun_path);
	return listen_one((struct sockaddr *)&sun, sizeof(sun), type, backlog, err, errlen);
}

static int resolve(const struct net_addr *a, int type, bool passive, struct addrinfo **res,
		   char *err, size_t errlen)
{
	struct addrinfo hints = {.ai_socktype = type, .ai_flags = AI_NUMERICSERV};
	char port[8];
	int rc;

	if (passive)
		hints.ai_flags |= AI_PASSIVE;
	snprintf(port, sizeof(port), "%u", a->port);
	rc = getaddrinfo(a->host[0] ? a->host : NULL, port, &hints, res);
	if (rc == 0)
		return 0;
	if (err)
		snprintf(err, errlen, "resolve %s: %s", a->host, gai_strerror(rc));
	return rc == EAI_SYSTEM ? -errno : -EADDRNOTAVAIL;
}

/* The port fd is bound to, so the next wildcard socket can share it. */
static uint16_t bound_port(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
		return 0;
	if (ss.ss_family == AF_INET)
		return ntohs(((struct sockaddr_in *)&ss)->sin_port);
	if (ss.ss_family == AF_INET6)
		return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	return 0;
}

static void set_port(struct sockaddr *sa, uint16_t port)
{
	if (sa->sa_family == AF_INET)
		((struct sockaddr_in *)sa)->sin_port = htons(port);
	else if (sa->sa_family == AF_INET6)
		((struct sockaddr_in6 *)sa)->sin6_port = htons(port);
}

static int listen_wildcard(const struct net_addr *a, int type, int backlog, int *fds, int max,
			   char *err, size_t errlen)
{
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_ANY)};
	struct sockaddr_in6 sin6 = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_ANY_INIT};
	int fd, n = 0;

	if (max < 2)
		return -ENOSPC;
	sin.sin_port = htons(a->port);
	fd = listen_one((struct sockaddr *)&sin, sizeof(sin), type, backlog, err, errlen);
	if (fd < 0)
		return fd;
	fds[n++] = fd;
	/* Port 0: let IPv6 share the port the kernel picked for IPv4. */
	sin6.sin6_port = htons(a->port ? a->port : bound_port(fd));
	fd = listen_one((struct sockaddr *)&sin6, sizeof(sin6), type, backlog, err, errlen);
	if (fd == -EAFNOSUPPORT || fd == -EADDRNOTAVAIL)
		return n; /* no IPv6 on this host: IPv4 alone is still useful */
	if (fd < 0) {
		close(fds[0]);
		return fd;
	}
	fds[n++] = fd;
	return n;
}

int net_listen(const struct net_addr *a, int type, int backlog, int *fds, int max, char *err,
	       size_t errlen)
{
	struct addrinfo *res, *ai;
	int fd, n = 0, rc;

	if (a->is_unix) {
		if (max < 1)
			return -ENOSPC;
		fd = listen_unix(a, type, backlog, err, errlen);
		if (fd < 0)
			return fd;
		fds[0] = fd;
		return 1;
	}
	if (!a->host[0])
		return listen_wildcard(a, type, backlog, fds, max, err, errlen);
	rc = resolve(a, type, true, &res, err, errlen);
	if (rc < 0)
		return rc;
	for (ai = res; ai && n < max; ai = ai->ai_next) {
		/* Port 0: every address of the name shares the first one's port. */
		if (a->port == 0 && n > 0)
			set_port(ai->ai_addr, bound_port(fds[0]));
		fd = listen_one(ai->ai_addr, ai->ai_addrlen, type, backlog, err, errlen);
		if (fd < 0) {
			while (n > 0)
				close(fds[--n]);
			freeaddrinfo(res);
			return fd;
		}
		fds[n++] = fd;
	}
	freeaddrinfo(res);
	return n;
}

/* Waits for a non-blocking connect on fd to finish.  Returns 0 or -errno. */
static int await_connect(int fd, int timeout_ms)
{
	socklen_t len = sizeof(int);
	int rc, soerr = 0;

	rc = net_wait(fd, POLLOUT, timeout_ms);
	if (rc == 0)
		return -ETIMEDOUT;
	if (rc < 0)
		return rc;
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0)
		return -errno;
	return -soerr;
}

/* Connects one socket to sa, waiting at most timeout_ms.  Returns fd or -errno. */
static int connect_one(const struct sockaddr *sa, socklen_t salen, int type, int timeout_ms)
{
	int fd, rc = 0;

	fd = socket(sa->sa_family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, sa, salen) < 0)
		rc = errno == EINPROGRESS ? await_connect(fd, timeout_ms) : -errno;
	if (rc < 0) {
		close(fd);
		return rc;
	}
	return fd;
}

static int connect_resolved(const struct net_addr *a, int type, int timeout_ms, char *err,
			    size_t errlen)
{
	uint64_t deadline = clock_now_ms() + (uint64_t)timeout_ms;
	struct addrinfo *res, *ai;
	char name[NET_NAMELEN];
	int fd = -EADDRNOTAVAIL;

	fd = resolve(a, type, false, &res, err, errlen);
	if (fd < 0)
		return fd;
	for (ai = res; ai; ai = ai->ai_next) {
		int64_t left = (int64_t)(deadline - clock_now_ms());

		fd = connect_one(ai->ai_addr, ai->ai_addrlen, type, left > 0 ? (int)left : 0);
		net_format_sockaddr(ai->ai_addr, ai->ai_addrlen, name, sizeof(name));
		if (fd >= 0)
			break;
		set_err(err, errlen, "connect %s: %s", name, -fd);
	}
	freeaddrinfo(res);
	return fd;
}

int net_connect(const struct net_addr *a, int type, int timeout_ms, char *err, size_t errlen)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	int fd;

	if (!a->is_unix)
		return connect_resolved(a, type, timeout_ms, err, errlen);
	strcpy(sun.sun_path, a->path);
	fd = connect_one((struct sockaddr *)&sun, sizeof(sun), type, timeout_ms);
	if (fd < 0)
		set_err(err, errlen, "connect %s: %s", a->path, -fd);
	return fd;
}

int net_accept(int lfd)
{
	int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC), one = 1;

	if (fd < 0)
		return -errno;
	/*
	 * An echo is written the moment it is read: Nagle's algorithm would
	 * only hold back the tail of a partial echo until the peer's delayed
	 * ACK.  Fails harmlessly on unix sockets.
	 */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return fd;
}

bool net_accept_error_is_resource(int err)
{
	return err == -EMFILE || err == -ENFILE || err == -ENOBUFS || err == -ENOMEM;
}

enum net_accept_next net_accept_error_next(int err)
{
	switch (-err) {
	case EAGAIN:
#if EWOULDBLOCK != EAGAIN
	case EWOULDBLOCK:
#endif
		return NET_ACCEPT_EMPTY;
	/*
	 * The client reset or gave up while queued, a signal came, or (Linux,
	 * accept(2)) a network error already pending on the new connection
	 * is reported by accept: the listener is fine, take the next one.
	 */
	case EINTR:
	case ECONNABORTED:
	case EPROTO:
	case EPERM: /* a firewall rule refused this connection */
	case ENETDOWN:
	case ENOPROTOOPT:
	case EHOSTDOWN:
	case ENONET:
	case EHOSTUNREACH:
	case EOPNOTSUPP:
	case ENETUNREACH:
		return NET_ACCEPT_NEXT;
	default:
		return NET_ACCEPT_PAUSE;
	}
}

int net_wait(int fd, short events, int timeout_ms)
{
	struct pollfd pfd = {.fd = fd, .events = events};
	int rc;

	do
		rc = poll(&pfd, 1, timeout_ms);
	while (rc < 0 && errno == EINTR);
	if (rc < 0)
		return -errno;
	return rc ? pfd.revents : 0;
}

int net_send_all(int fd, const void *buf, size_t len, int timeout_ms)
{
	const char *p = buf;
	ssize_t n;
	int rc;

	while (len > 0) {
		n = send(fd, p, len, MSG_NOSIGNAL);
		if (n >= 0) {
			p += n;
			len -= (size_t)n;
			continue;
		}
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			return -errno;
		rc = net_wait(fd, POLLOUT, timeout_ms);
		if (rc <= 0)
			return rc == 0 ? -ETIMEDOUT : rc;
	}
	return 0;
}

int net_write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;
	ssize_t n;

	while (len > 0) {
		n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

ssize_t net_recv(int fd, void *buf, size_t len, int timeout_ms)
{
	ssize_t n;
	int rc;

	for (;;) {
		n = recv(fd, buf, len, 0);
		if (n >= 0)
			return n;
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			return -errno;
		rc = net_wait(fd, POLLIN, timeout_ms);
		if (rc <= 0)
			return rc == 0 ? -ETIMEDOUT : rc;
	}
}

/* Options for a UDP echo socket; see net_bind_dgram().  Returns 0 or -errno. */
static int dgram_options(int fd, int family)
{
	int one = 1, rcvbuf = 4 << 20;

	if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0)
		return -errno;
	/* A bigger queue absorbs bursts; the kernel caps it at rmem_max. */
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
	if (family == AF_INET)
		return setsockopt(fd, IPPROTO_IP, IP_PKTINFO, &one, sizeof(one)) < 0 ? -errno : 0;
	/* [::] must leave 0.0.0.0 to its own socket, as for TCP. */
	if (setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) < 0)
		return -errno;
	return setsockopt(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, &one, sizeof(one)) < 0 ? -errno : 0;
}

int net_bind_dgram(const struct sockaddr *sa, socklen_t salen, char *err, size_t errlen)
{
	char name[NET_NAMELEN];
	int fd, rc;

	fd = socket(sa->sa_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		rc = -errno;
		goto out_err;
	}
	rc = dgram_options(fd, sa->sa_family);
	if (rc == 0 && bind(fd, sa, salen) < 0)
		rc = -errno;
	if (rc == 0)
		return fd;
	close(fd);
out_err:
	net_format_sockaddr(sa, salen, name, sizeof(name));
	set_err(err, errlen, "bind udp %s: %s", name, -rc);
	return rc;
}
