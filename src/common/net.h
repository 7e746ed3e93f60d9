/*
 * net.h - addresses and sockets, shared by echod and echoc (the "anet").
 *
 * Boring on purpose.  Functions return 0 or a non-negative result, and
 * -errno on failure; setup calls also write one line naming the step and the
 * address into err (which may be NULL).  Nothing here exits, and nothing here
 * resolves a peer's address to a name.
 */
#ifndef ECHOD_NET_H
#define ECHOD_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/un.h>

#define NET_ERRLEN	 256
#define NET_NAMELEN	 128 /* "[v6addr%scope]:port" or a unix path */
#define NET_DEFAULT_PORT 7127

/*
 * The largest payload of one UDP datagram (no IPv6 jumbograms): 65535 less
 * the IPv4 and UDP headers; IPv6 counts no IP header in its 65535, so 20
 * bytes more fit.
 */
#define NET_UDP_MAX_PAYLOAD4 65507
#define NET_UDP_MAX_PAYLOAD6 65527

/* A parsed -l argument or echoc target. */
struct net_addr {
	bool is_unix;
	char host[256]; /* empty: every address (wildcard) */
	uint16_t port;	/* may be 0: any free port */
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
};

/*
 * Parses PORT | HOST | HOST:PORT | [V6ADDR]:PORT | [V6ADDR] | unix:PATH.
 * A missing port is default_port.  Returns 0, or -EINVAL with the reason.
 */
int net_parse_addr(const char *s, uint16_t default_port, struct net_addr *a, char *err,
		   size_t errlen);

/* Formats sa numerically: "127.0.0.1:7127", "[::1]:7127" or the unix path. */
void net_format_sockaddr(const struct sockaddr *sa, socklen_t len, char *buf, size_t buflen);
/* The local address of fd, formatted as above. */
void net_format_local(int fd, char *buf, size_t buflen);
/* The peer address of fd, formatted as above. */
void net_format_peer(int fd, char *buf, size_t buflen);

/*
 * Opens listening sockets for a: one per address it resolves to (a wildcard
 * TCP address gives 0.0.0.0 and [::], the latter IPv6-only).  Sockets are
 * non-blocking, close-on-exec, with SO_REUSEADDR.  Stores up to max fds in
 * fds and returns how many; -errno with a reason in err, and every socket
 * opened so far closed, on failure.  A stale unix socket file (one nobody
 * listens on) is replaced.
 */
int net_listen(const struct net_addr *a, int type, int backlog, int *fds, int max, char *err,
	       size_t errlen);

/*
 * Replaces the TCP listener fd (from net_listen) by n SO_REUSEPORT
 * listeners on the same address and port, each bound and listening before
 * the next, so fds[i] is socket i of the kernel's reuseport group.  fd is
 * closed first.  Binding it plainly first is what keeps the check that
 * nobody else listens there: a second echod would otherwise join the group
 * and share the connections; the window between the close and the first
 * bind is the only one.  Returns 0, or -errno with every socket closed.
 */
int net_listen_group(int fd, int backlog, int *fds, int n, char *err, size_t errlen);

/*
 * Connects to a within timeout_ms, trying every address the host resolves
 * to in turn.  Returns a non-blocking, close-on-exec socket of the given type
 * (SOCK_STREAM or SOCK_DGRAM), or -errno with a reason in err.
 */
int net_connect(const struct net_addr *a, int type, int timeout_ms, char *err, size_t errlen);

/*
 * Accepts one connection from a listening socket as a non-blocking,
 * close-on-exec socket.  Returns the fd or -errno (-EAGAIN when none waits).
 */
int net_accept(int lfd);

/* True for accept errors that mean "out of descriptors or memory": back off. */
bool net_accept_error_is_resource(int err);

/* What to do after accept(2) failed; every engine's accept path follows it. */
enum net_accept_next {
	NET_ACCEPT_NEXT,  /* that client is gone (or a signal): accept the next one */
	NET_ACCEPT_EMPTY, /* -EAGAIN: nobody waits; wait for the listener */
	NET_ACCEPT_PAUSE, /* out of resources, or a fault that would recur at once:
			     leave the backlog be for a while (and say so) */
};
enum net_accept_next net_accept_error_next(int err);

/*
 * Waits until fd is ready for events (POLLIN, POLLOUT), at most timeout_ms
 * (negative: forever).  Returns the revents, 0 on timeout, -errno on error.
 */
int net_wait(int fd, short events, int timeout_ms);

/*
 * Sends all len bytes on a (possibly non-blocking) socket, waiting at most
 * timeout_ms for each bit of progress.  Returns 0, -ETIMEDOUT or -errno.
 * Never raises SIGPIPE.
 */
int net_send_all(int fd, const void *buf, size_t len, int timeout_ms);

/*
 * Writes all len bytes to a blocking descriptor (standard output, a file),
 * retrying after EINTR and partial writes.  Returns 0 or -errno.
 */
int net_write_all(int fd, const void *buf, size_t len);

/*
 * Receives up to len bytes, waiting at most timeout_ms for the first.
 * Returns the count, 0 at end of stream, -ETIMEDOUT or -errno.
 */
ssize_t net_recv(int fd, void *buf, size_t len, int timeout_ms);

/* Switches O_NONBLOCK on or off.  Returns 0 or -errno. */
int net_set_nonblock(int fd, bool on);

/*
 * Binds a non-blocking, close-on-exec UDP socket to sa with SO_REUSEPORT,
 * so several may share the address (one per worker), and asks for each
 * datagram's destination address (IP_PKTINFO / IPV6_RECVPKTINFO).  An IPv6
 * socket is IPv6-only.  Returns the fd, or -errno with a reason in err.
 */
int net_bind_dgram(const struct sockaddr *sa, socklen_t salen, char *err, size_t errlen);

#endif
